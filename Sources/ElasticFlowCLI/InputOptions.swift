import ArgumentParser
import ElasticFlow

/// How the commands that read files (`count`, `run`) take their sources: FILE arguments,
/// directories (every regular file below them) and `--files-from` lists.
struct InputOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Read the names of the sources from this file ('-': standard input), one per line, or "
                + "NUL-terminated (find -print0) when it holds a NUL byte or with --null. Repeatable.",
            valueName: "PATH"))
    var filesFrom: [String] = []

    @Flag(name: [.customShort("0"), .long], help: "The --files-from lists are NUL-separated, whatever they hold.")
    var null = false

    @Flag(
        name: .long,
        help: "Leave out unreadable entries (each reported on standard error, then their count) instead of failing.")
    var skipUnreadable = false

    /// Whether any source was given (FILE arguments or a list).
    func anyGiven(_ files: [String]) -> Bool { !files.isEmpty || !filesFrom.isEmpty }

    /// The sources of `files` and the `--files-from` lists, in that order, directories expanded
    /// (`SourceList`). Each skipped entry is one line on standard error, then their count.
    /// - Returns: the paths, `-` for standard input.
    func sources(_ files: [String]) throws(ElasticFlowError) -> [String] {
        var names = files
        for list in filesFrom {
            if list == "-" && names.contains("-") {
                throw .invalidArgument("standard input is both a source and the --files-from list")
            }
            let listed = try SourceList.names(inListAt: list, separator: null ? .nul : .automatic)
            if list == "-" && listed.contains("-") {
                throw .invalidArgument("the --files-from list on standard input names '-' (standard input) itself")
            }
            names += listed
        }
        let expanded = try SourceList(expanding: names, unreadable: skipUnreadable ? .skip : .fail)
        let logger = LogOptions.cli
        for entry in expanded.skipped { logger.warning("skipping: \(entry.reason)") }
        if !expanded.skipped.isEmpty {
            let count = expanded.skipped.count
            logger.warning("skipped \(count) unreadable entr\(count == 1 ? "y" : "ies") (--skip-unreadable)")
        }
        if expanded.sources.isEmpty { logger.notice("\(Self.nothingNamed(files: files, lists: filesFrom))") }
        return expanded.sources.map(\.description)
    }

    /// The note on standard error when the arguments and lists name no source at all (an empty
    /// list, empty directories, every entry skipped): the count is then empty and the exit 0, as
    /// GNU `wc --files0-from=/dev/null` does, but the user learns why nothing was printed (an
    /// empty `find` result or a list written to another path is a mistake more often than not).
    static func nothingNamed(files: [String], lists: [String]) -> String {
        func quoted(_ names: [String]) -> String { names.map { "'\($0)'" }.joined(separator: ", ") }
        var given: [String] = []
        if !files.isEmpty { given.append(quoted(files)) }
        if !lists.isEmpty { given.append("--files-from " + quoted(lists)) }
        let hold = files.count + lists.count == 1 ? "holds" : "hold"
        return "no input files: \(given.joined(separator: " and ")) \(hold) no file to count"
    }
}

import ArgumentParser
import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

extension WordCountFormat: ExpressibleByArgument {}

struct CountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "count",
        abstract: "Count words: one 'word count' line per distinct word, most frequent first.",
        discussion: """
            Words are maximal runs of bytes that are not ASCII whitespace (space, tab, newline, \
            vertical tab, form feed, carriage return); every other byte is kept as read. Ties are \
            ordered by the word's bytes, ascending. The input is streamed in parcels cut at line \
            boundaries, counted on every core, and merged.
            """
    )

    @Flag(name: .long, help: "Fold ASCII letters A-Z to lowercase before counting.")
    var lowercase = false

    @Option(name: .long, help: ArgumentHelp("Print only the N most frequent words.", valueName: "N"))
    var top: Int?

    @Option(name: .long, help: "Output format: text ('word count'), tsv ('word<TAB>count') or json.")
    var format: WordCountFormat = .text

    @Option(name: .long, help: ArgumentHelp("Counting threads (default: one per core).", valueName: "N"))
    var threads: Int?

    @Option(
        name: .long,
        help: ArgumentHelp("Target parcel size, e.g. 4MiB or 512KiB (default 4MiB).", valueName: "SIZE"))
    var parcelSize: String?

    @Argument(help: ArgumentHelp("Files to count; '-' reads standard input.", valueName: "FILE"))
    var files: [String]

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one FILE ('-' for standard input)") }
        if let top, top < 1 { throw ValidationError("--top must be at least 1") }
        if let threads, threads < 1 || threads > 1024 { throw ValidationError("--threads must be in 1...1024") }
    }

    func run() throws {
        do throws(ElasticFlowError) {
            var options = WordCountOptions(lowercase: lowercase, threads: threads)
            if let parcelSize { options.parcelSize = try ByteSize.parse(parcelSize) }
            let (counter, _) = try LocalWordCount.run(files.map(DataSource.init(argument:)), options: options)
            try counter.write(format: format, limit: top, toFileDescriptor: STDOUT_FILENO)
        } catch {
            fail(error.description)
        }
    }
}

import ArgumentParser
import ElasticFlow
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `--log-level` and `--log-format`, on every command that logs. `bootstrap()` sets up swift-log
/// once for the process, so every `Logger` made after it (the CLI's, the master's, the worker's,
/// the journal's) writes through `LineLogHandler`.
struct LogOptions: ParsableArguments {
    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp(
            "The least severe level logged: trace, debug, info, notice, warning, error or critical (default info).",
            valueName: "LEVEL"))
    var level = "info"

    @Option(
        name: .customLong("log-format"),
        help: ArgumentHelp("text (default) or json: one JSON object a line, for log shippers.", valueName: "FORMAT"))
    var format = "text"

    /// The level given (`info` by default).
    var logLevel: Logger.Level { Logger.Level(rawValue: level) ?? .info }
    /// The format given (`text` by default).
    var logFormat: LogFormat { LogFormat(rawValue: format) ?? .text }

    /// One line naming the valid values (ArgumentParser's own message for a list spans several).
    func validate() throws {
        guard Logger.Level(rawValue: level) != nil else {
            let valid = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("invalid --log-level '\(level)': expected one of \(valid)")
        }
        guard LogFormat(rawValue: format) != nil else {
            throw ValidationError("invalid --log-format '\(format)': expected text or json")
        }
    }

    /// The arguments that give a child process (an `example` worker) the same logging.
    var arguments: [String] { ["--log-level", logLevel.rawValue, "--log-format", logFormat.rawValue] }

    /// Routes every `Logger` of this process to standard error through `LineLogHandler`, at
    /// `level` (the flag's unless given) or more severe.
    func bootstrap(level: Logger.Level? = nil) {
        Self.bootstrap(format: logFormat, level: level ?? logLevel)
    }

    private static func bootstrap(format: LogFormat, level: Logger.Level) {
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: format, level: level) }
        bootstrapped.withLock { $0 = format }
    }

    /// For an error that comes before any command bootstrapped logging (parsing, validation): when the command
    /// line asks for `--log-format json`, logging is bootstrapped so, and the error's one line is a
    /// JSON record like every other line on standard error. Does nothing once bootstrapped.
    static func bootstrapForEarlyError(arguments: [String]) {
        guard bootstrapped.withLock({ $0 }) == nil else { return }
        let asksJSON = arguments.indices.contains { index in
            arguments[index] == "--log-format=json"
                || (arguments[index] == "--log-format" && arguments.indices.contains(index + 1)
                    && arguments[index + 1] == "json")
        }
        if asksJSON { bootstrap(format: .json, level: .info) }
    }

    /// Set once by `bootstrap` (nil before): with `--log-format json`, the step summary and the
    /// closing error are JSON records too, so that every line on standard error parses.
    private static let bootstrapped = Mutex<LogFormat?>(nil)

    /// Whether this process logs JSON (`--log-format json` was bootstrapped).
    static var writesJSON: Bool { bootstrapped.withLock { $0 } == .json }

    /// The step summary (`--summary`, `--verbose`) on standard error: plain lines, or with
    /// `--log-format json` one record (`notice`, the lines in its message, the step as metadata).
    static func writeSummary(_ summary: StepSummary) {
        if writesJSON {
            cli.notice("\(summary)", metadata: ["step": "\(summary.step)"])
        } else {
            writeLine(summary.description, to: STDERR_FILENO)
        }
    }

    /// The CLI's own logger (`elasticflow`), for lines about the command itself.
    static var cli: Logger { Logger(label: "elasticflow") }
    /// The master's logger (`elasticflow.master`): its own record of each step, the journal's.
    static var master: Logger { Logger(label: "elasticflow.master") }
    /// The `--verbose` per-event log (`elasticflow.events`, at `info`).
    static var events: Logger { Logger(label: "elasticflow.events") }
}

import ArgumentParser
import ElasticFlow
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

@main
struct ElasticFlowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elasticflow",
        abstract: "Distribute a Flow-style computation (word count built in) over a cluster, or run it on one node.",
        version: "0.1.0 (core \(ElasticFlowVersion.core))",
        subcommands: [
            CountCommand.self, WorkerCommand.self, RunCommand.self, StepsCommand.self, ResumeCommand.self,
            ExampleCommand.self, GenerateCommand.self, CompressCommand.self,
        ]
    )

    /// ArgumentParser's own main, but a parse or validation error is one line
    /// (`elasticflow: error: …`, exit 64) rather than the error, the usage and a hint: every bad
    /// input gets one clear line, whoever refuses it. Help and version print as usual.
    static func main() {
        // A parent may hand down SIGINT and SIGTERM blocked (Foundation's Process does): unblocked
        // here, so Ctrl-C and a supervisor's SIGTERM always reach us. One that ignores them
        // (SIG_IGN, as `nohup` or a background job does) keeps its way.
        var interrupts = sigset_t()
        sigemptyset(&interrupts)
        sigaddset(&interrupts, SIGINT)
        sigaddset(&interrupts, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &interrupts, nil)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            guard code != .success else { exit(withError: error) }
            LogOptions.bootstrapForEarlyError(arguments: Array(CommandLine.arguments.dropFirst()))
            let lines = message(for: error).split(whereSeparator: \.isNewline).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            fail(lines.filter { !$0.isEmpty }.joined(separator: " "), code: code.rawValue)
        }
    }
}

/// Prints `elasticflow: error: MESSAGE` on standard error (with `--log-format json`, an `error`
/// record of the `elasticflow` logger) and exits with `code`.
func fail(_ message: String, code: Int32 = 1) -> Never {
    if LogOptions.writesJSON {
        LogOptions.cli.error("\(message)")
        exit(code)
    }
    var line = "elasticflow: error: \(message)\n"
    line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(code)
}

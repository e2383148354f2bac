import ArgumentParser
import ElasticFlow

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
            ExampleCommand.self, GenerateCommand.self,
        ]
    )
}

/// Prints `elasticflow: error: MESSAGE` on standard error and exits with `code`.
func fail(_ message: String, code: Int32 = 1) -> Never {
    var line = "elasticflow: error: \(message)\n"
    line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(code)
}

import ArgumentParser
import ElasticFlow
import Foundation

/// `elasticflow steps`: the steps journaled in a step-data directory.
struct StepsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "steps",
        abstract: "List the steps of a step-data directory with their timeline and failures, or print a result.")

    @Option(name: .long, help: ArgumentHelp("The step-data directory.", valueName: "DIR"))
    var stepData: String

    @Option(name: .long, help: ArgumentHelp("Only this step.", valueName: "N"))
    var step: UInt32?

    @Flag(name: .long, help: "Print the step's result (needs --step).")
    var result = false

    @Option(name: .long, help: "Format of a word count result: text, tsv or json.")
    var format: WordCountFormat = .text

    func run() throws {
        do throws(ElasticFlowError) {
            if result {
                guard let step else { throw .invalidArgument("--result needs --step N") }
                guard let output = try StepExecution.output(of: step, in: stepData) else {
                    throw .invalidArgument("step \(step) has no result yet")
                }
                try printOutput(output, format: format, top: nil)
                return
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: stepData, isDirectory: &isDirectory), isDirectory.boolValue
            else {
                throw .invalidArgument("no step-data directory '\(stepData)'")
            }
            let records = try StepJournal.steps(in: stepData).filter { step == nil || $0.step == step }
            if let step, records.isEmpty { throw .invalidArgument("no step \(step) in \(stepData)") }
            if records.isEmpty { writeLine("no steps in \(stepData)", to: STDOUT_FILENO) }
            var lines: [String] = []
            for record in records {
                lines.append(
                    "step \(record.step) \(record.name) [\(record.task)] \(record.state): \(record.parcels) parcels, "
                        + "\(record.retries) retries, \(record.duplicates) duplicates dropped")
                for event in record.timeline {
                    let time = Date(timeIntervalSince1970: event.time).ISO8601Format()
                    lines.append("  \(time) \(event.state)" + (event.detail.isEmpty ? "" : ": \(event.detail)"))
                }
                if let failure = record.failure { lines.append("  failure: \(failure)") }
            }
            for line in lines { writeLine(line, to: STDOUT_FILENO) }
        } catch {
            fail(error.description)
        }
    }
}

/// `elasticflow resume` and `elasticflow retry`: finish a journaled step, re-processing only the
/// parcels whose receipts were never aggregated.
struct ResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Finish a step whose master was killed (or that failed), from its journal.",
        discussion: """
            Re-cuts the step's sources into the same parcels (checking each against its journaled \
            receipt), skips the parcels whose results the last checkpoint holds, and processes the \
            rest. The result equals an uninterrupted run. Without --step, resumes the latest \
            unfinished step. `retry` is the same command for a failed step.
            """,
        aliases: ["retry"])

    @Option(name: .long, help: ArgumentHelp("The step-data directory.", valueName: "DIR"))
    var stepData: String

    @Option(name: .long, help: ArgumentHelp("The step to resume (default: the latest unfinished one).", valueName: "N"))
    var step: UInt32?

    @OptionGroup
    var output: OutputOptions

    @Option(name: .long, help: ArgumentHelp("Threads of the master.", valueName: "N"))
    var threads: Int?

    @Flag(name: .long, help: "Print the step summary on standard error.")
    var summary = false

    @OptionGroup(title: "Cluster")
    var cluster: ClusterOptions

    @OptionGroup(title: "Logging")
    var log: LogOptions

    func validate() throws {
        do throws(ElasticFlowError) {
            if let threads { try Limits.check(threads, in: Limits.threads, "--threads") }
        } catch {
            throw ValidationError(error.description)
        }
    }

    @OptionGroup
    var statusServer: StatusOptions

    func run() throws {
        log.bootstrap()
        do throws(ElasticFlowError) {
            let status = try statusServer.start()
            defer { status?.finish() }
            let records = try StepJournal.steps(in: stepData)
            guard
                let chosen = step
                    ?? records.last(where: { !$0.state.isFinished })?.step
            else { throw .invalidArgument("no unfinished step in \(stepData)") }
            guard let record = records.first(where: { $0.step == chosen }) else {
                throw .invalidArgument("no step \(chosen) in \(stepData)")
            }
            let workers = try cluster.workerAddresses() ?? []
            let cookie = try cluster.cookieOptions.resolve(required: !workers.isEmpty || cluster.listen != nil)
            var configuration = ClusterConfiguration(workers: workers, cookie: cookie)
            configuration.parcelSize = record.parcelSize
            configuration.sharedInput = record.sharedInput ?? false
            configuration.compression = try Compression(parsing: record.compression)
            if let threads { configuration.masterThreads = threads }
            try cluster.apply(to: &configuration, parcelSize: nil)
            let bar = ProgressBar()
            let master = Master(configuration: configuration, logger: LogOptions.master)
            status?.attach(master)
            let report = try StepExecution.resume(step: chosen, master: master, stepData: stepData) {
                bar.update($0)
            }
            bar.finish()
            try printOutput(report.output, format: output.format, top: output.top)
            if summary { LogOptions.writeSummary(report.summary) }
        } catch {
            fail(error.description)
        }
    }
}

/// Prints a step's output: a word count as `count` does, a value as JSON-like text.
func printOutput(_ output: StepOutput, format: WordCountFormat, top: Int?) throws(ElasticFlowError) {
    switch output {
    case .wordCount(let counter):
        try counter.write(format: format, limit: top, toFileDescriptor: STDOUT_FILENO)
    case .value(let value):
        writeLine(value.description, to: STDOUT_FILENO)
    }
}

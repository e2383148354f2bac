import ArgumentParser
import ElasticFlow
import Foundation

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
            boundaries, counted on every core, and merged. With --workers, parcels go to worker \
            processes (`elasticflow worker`) and the output is identical, byte for byte.
            """
    )

    @Flag(name: .long, help: "Fold ASCII letters A-Z to lowercase before counting.")
    var lowercase = false

    @OptionGroup
    var output: OutputOptions

    @Option(name: .long, help: ArgumentHelp("Counting threads (default: one per core).", valueName: "N"))
    var threads: Int?

    @Option(
        name: .long,
        help: ArgumentHelp("Target parcel size, e.g. 4MiB or 512KiB (default 4MiB).", valueName: "SIZE"))
    var parcelSize: String?

    @Flag(name: .long, help: "With --workers: print the step summary on standard error.")
    var summary = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Journal the step here; running the same command again resumes it if it was interrupted or failed.",
            valueName: "DIR"))
    var stepData: String?

    @OptionGroup(title: "Cluster")
    var cluster: ClusterOptions

    @OptionGroup(title: "Sources")
    var input: InputOptions

    @OptionGroup(title: "Logging")
    var log: LogOptions

    @Argument(
        help: ArgumentHelp(
            "Files or directories (every file below) to count; '-' or none reads standard input. gzip, zstd, "
                + "lz4 and bzip2 files are decompressed.",
            valueName: "FILE"))
    var files: [String] = []

    @OptionGroup
    var statusServer: StatusOptions

    func run() throws {
        log.bootstrap()
        let interrupts = stepData != nil ? InterruptWatcher() : nil
        do throws(ElasticFlowError) {
            let status = try statusServer.start()
            defer { status?.finish() }
            let files = input.anyGiven(self.files) ? try input.sources(self.files) : ["-"]  // as wc does
            let sources = files.map(DataSource.init(argument:))
            if let workers = try cluster.workerAddresses() ?? (stepData != nil ? [] : nil) {
                let cookie = try cluster.cookieOptions.resolve(required: !workers.isEmpty || cluster.listen != nil)
                var configuration = ClusterConfiguration(workers: workers, cookie: cookie)
                if let threads { configuration.masterThreads = threads }
                try cluster.apply(to: &configuration, parcelSize: parcelSize)
                let report: StepReport
                if let stepData {
                    let definition = StepDefinition(
                        name: "count", task: "wordcount", sources: files.map(absolutePath),
                        options: TaskOptions(lowercase: lowercase))
                    report = try runJournaled(
                        definition, configuration: configuration, stepData: stepData, interrupts: interrupts,
                        status: status)
                } else {
                    report = try runOnCluster(
                        configuration: configuration, task: "wordcount", sources: sources,
                        options: TaskOptions(lowercase: lowercase), status: status)
                }
                guard case .wordCount(let counter) = report.output else { fail("the word count returned no table") }
                try counter.write(format: output.format, limit: output.top, toFileDescriptor: STDOUT_FILENO)
                if summary { LogOptions.writeSummary(report.summary) }
            } else {
                if cluster.anyGiven {
                    throw .invalidArgument(
                        "cluster flags (--cookie, --compression, --chaos, ...) need --workers or --listen")
                }
                var options = WordCountOptions(lowercase: lowercase, threads: threads)
                if let parcelSize {
                    options.parcelSize = try Limits.size(parcelSize, in: Limits.parcelSize, "--parcel-size")
                }
                if let cap = try cluster.wordSizeCap() { options.maxWordSize = cap }
                if let mode = try cluster.decompression() { options.decompression = mode }
                try options.validate()
                let bar = ProgressBar()
                var onProgress: (@Sendable (StepProgress) -> Void)?
                if bar.isEnabled { onProgress = { progress in bar.update(progress) } }
                let counter: WordCounter
                do {
                    defer { bar.finish() }  // an error's line must not follow the bar
                    (counter, _) = try status.localRun(sources, options: options, progress: onProgress)
                }
                try counter.write(format: output.format, limit: output.top, toFileDescriptor: STDOUT_FILENO)
            }
        } catch {
            fail(error.description)
        }
    }
}

/// Runs a step on a cluster with a progress bar on a terminal.
func runOnCluster(
    configuration: ClusterConfiguration, task: String, sources: [DataSource], options: TaskOptions,
    interceptors: [any Interceptor] = [], status: StatusSession? = nil
) throws(ElasticFlowError) -> StepReport {
    let master = Master(configuration: configuration, logger: LogOptions.master)
    status?.attach(master)
    for interceptor in interceptors { master.add(interceptor) }
    if interceptors.isEmpty { master.add(NoticeInterceptor()) }
    // Interceptors that log every event (--verbose) write lines a bar would break.
    let bar = interceptors.isEmpty ? ProgressBar() : nil
    defer { bar?.finish() }
    return try master.run(task: task, sources: sources, options: options) { bar?.update($0) }
}

/// A path made absolute (so a journaled step names the same files from any directory); `-` stays.
func absolutePath(_ path: String) -> String {
    if path == "-" || path.hasPrefix("/") { return path }
    return FileManager.default.currentDirectoryPath + "/" + path
}

/// Runs a step with its journal: resumes the unfinished step of the same definition if there is
/// one (a master that was killed, or a step that failed), else starts a new one.
/// - Parameter interceptors: what sees the step's events (default: the notices; `--verbose`
///   logs every event, and then no bar is drawn).
func runJournaled(
    _ definition: StepDefinition, configuration: ClusterConfiguration, stepData: String,
    interrupts: InterruptWatcher? = nil, interceptors: [any Interceptor] = [], status: StatusSession? = nil
)
    throws(ElasticFlowError) -> StepReport
{
    // Held from the search for an unfinished step to the end: a second master is refused at once.
    let hold = try StepDataLock(directory: stepData)
    defer { withExtendedLifetime(hold) {} }
    let master = Master(configuration: configuration, logger: LogOptions.master)
    status?.attach(master)
    for interceptor in interceptors { master.add(interceptor) }
    if interceptors.isEmpty { master.add(NoticeInterceptor()) }
    let bar = interceptors.isEmpty ? ProgressBar() : nil
    defer { bar?.finish() }
    if let step = try StepExecution.unfinishedStep(
        matching: definition, parcelSize: configuration.parcelSize, sharedInput: configuration.sharedInput,
        decompression: configuration.decompression, in: stepData)
    {
        LogOptions.cli.notice("resuming step \(step) from \(stepData)", metadata: ["step": "\(step)"])
        let cancellation = CancellationFlag()
        interrupts?.onSignal { signal in
            LogOptions.cli.notice(
                "signal \(signal): cancelling step \(step) (`elasticflow retry` finishes it)",
                metadata: ["step": "\(step)"])
            cancellation.cancel()
        }
        return try StepExecution.resume(step: step, master: master, stepData: stepData, cancellation: cancellation) {
            bar?.update($0)
        }
    }
    let queue = try StepQueue(master: master, stepData: stepData)
    let step = try queue.add(definition)
    interrupts?.onSignal { signal in
        LogOptions.cli.notice(
            "signal \(signal): cancelling step \(step) (`elasticflow retry` finishes it)",
            metadata: ["step": "\(step)"])
        queue.cancel(step)
    }
    queue.run { _, progress in bar?.update(progress) }
    let status = queue.list().first { $0.step == step }
    guard let output = queue.output(of: step), let summary = status?.summary else {
        throw .cluster(status?.failure ?? "step \(step) did not complete")
    }
    return StepReport(output: output, summary: summary)
}

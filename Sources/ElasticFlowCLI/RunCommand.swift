import ArgumentParser
import ElasticFlow
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a registered task over files on the cluster a cluster file describes.",
        discussion: """
            The cluster file (JSON, see docs/cluster-file.md) names the nodes (name, address, role \
            master or worker), the cookie file, the compression, the parcel size, the in-flight \
            limit and whether the master processes parcels; flags given here override it. This \
            process is the master; the workers must already run `elasticflow worker`. Tasks: \
            wordcount (prints like `count`), line-lengths, longest-line (print their aggregated value).
            """
    )

    @Option(name: .long, help: ArgumentHelp("The cluster file.", valueName: "PATH"))
    var config: String

    @Option(name: .long, help: ArgumentHelp("The registered task to run (default wordcount).", valueName: "NAME"))
    var task = "wordcount"

    @Flag(name: .long, help: "Fold ASCII letters A-Z to lowercase (tasks that read it).")
    var lowercase = false

    @Option(name: .long, help: ArgumentHelp("A task parameter (repeatable).", valueName: "KEY=VALUE"))
    var param: [String] = []

    @OptionGroup(title: "Word count output")
    var output: OutputOptions

    @Option(name: .long, help: ArgumentHelp("Target parcel size (overrides the file).", valueName: "SIZE"))
    var parcelSize: String?

    @Flag(name: .long, help: "Log every parcel event and print the step summary on standard error.")
    var verbose = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "A JSON list of steps to run one after another: [{name, task, sources, options, actionOnFailure}].",
            valueName: "PATH"))
    var steps: String?

    @Option(name: .long, help: ArgumentHelp("Journal the steps here (resume and retry need it).", valueName: "DIR"))
    var stepData: String?

    @OptionGroup(title: "Overrides")
    var cluster: ClusterOptions

    @OptionGroup(title: "Sources")
    var input: InputOptions

    @OptionGroup(title: "Logging")
    var log: LogOptions

    @Argument(
        help: ArgumentHelp(
            "Files or directories (every file below) to process; '-' reads standard input.", valueName: "FILE"))
    var files: [String] = []

    func validate() throws {
        if !input.anyGiven(files) && steps == nil {
            throw ValidationError("give at least one FILE ('-' for standard input), --files-from or --steps")
        }
        if input.anyGiven(files) && steps != nil { throw ValidationError("give FILEs or --steps, not both") }
    }

    @OptionGroup
    var statusServer: StatusOptions

    func run() throws {
        log.bootstrap()
        let interrupts = steps != nil || stepData != nil ? InterruptWatcher() : nil
        do throws(ElasticFlowError) {
            let file = try ClusterFile.load(config)
            let status = try statusServer.start(fileAddress: file.status)
            defer { status?.finish() }
            // A cluster of the master alone needs no cookie; anything with workers (configured or
            // joining) does.
            let alone =
                !file.nodes.contains { $0.role == "worker" } && cluster.workers == nil && cluster.listen == nil
                && !file.nodes.contains { $0.role == "master" && !$0.address.hasSuffix(":0") }
            let cookie = try cluster.cookieOptions.resolve(fileFallback: file.cookieFile, required: !alone)
            var configuration = try file.configuration(cookie: cookie, workers: try cluster.workerAddresses())
            try cluster.apply(to: &configuration, parcelSize: parcelSize)
            var parameters: [String: String] = [:]
            for pair in param {
                guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                    throw .invalidArgument("invalid --param '\(pair)': expected KEY=VALUE")
                }
                parameters[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
            if let steps {
                try runQueue(steps, configuration: configuration, interrupts: interrupts, status: status)
                return
            }
            let files = try input.sources(self.files)
            if let stepData {
                let definition = StepDefinition(
                    name: task, task: task, sources: files.map(absolutePath),
                    options: TaskOptions(lowercase: lowercase, parameters: parameters))
                let report = try runJournaled(
                    definition, configuration: configuration, stepData: stepData, interrupts: interrupts,
                    interceptors: verbose ? [LoggingInterceptor(verbose: true, logger: LogOptions.events)] : [],
                    status: status)
                try printOutput(report.output, format: output.format, top: output.top)
                if verbose { LogOptions.writeSummary(report.summary) }
                return
            }
            let report = try runOnCluster(
                configuration: configuration, task: task, sources: files.map(DataSource.init(argument:)),
                options: TaskOptions(lowercase: lowercase, parameters: parameters),
                interceptors: verbose ? [LoggingInterceptor(verbose: true, logger: LogOptions.events)] : [],
                status: status)
            switch report.output {
            case .wordCount(let counter):
                try counter.write(format: output.format, limit: output.top, toFileDescriptor: STDOUT_FILENO)
            case .value(let value):
                writeLine(value.description, to: STDOUT_FILENO)
            }
            if verbose { LogOptions.writeSummary(report.summary) }
        } catch {
            fail(error.description)
        }
    }

    /// Runs a queue of steps from a JSON file, printing each step's state and output.
    private func runQueue(
        _ path: String, configuration: ClusterConfiguration, interrupts: InterruptWatcher?, status: StatusSession?
    ) throws(ElasticFlowError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, operation: "read steps file", errno: errno == 0 ? ENOENT : errno)
        }
        let definitions: [StepDefinition]
        do {
            definitions = try JSONDecoder().decode([StepDefinition].self, from: data)
        } catch {
            throw .invalidArgument(
                "steps file '\(path)' is not a JSON list of {name, task, sources, options, actionOnFailure}")
        }
        let master = Master(configuration: configuration, logger: LogOptions.master)
        status?.attach(master)
        master.add(verbose ? LoggingInterceptor(verbose: true, logger: LogOptions.events) : NoticeInterceptor())
        let queue = try StepQueue(master: master, stepData: stepData)
        for definition in definitions {
            var absolute = definition
            absolute.sources = try input.sources(definition.sources).map(absolutePath)  // directories expanded
            try queue.add(absolute)
        }
        // Ctrl-C cancels the running step and every pending one; the journal keeps them.
        interrupts?.onSignal { signal in
            LogOptions.cli.notice("signal \(signal): cancelling the running and pending steps")
            for status in queue.list() where status.state == .pending || status.state == .running {
                queue.cancel(status.step)
            }
        }
        let bar = verbose ? nil : ProgressBar()
        let allCompleted = queue.run { _, progress in bar?.update(progress) }
        bar?.finish()
        for status in queue.list() {
            writeLine("== step \(status.step) \(status.name) [\(status.task)]: \(status.state)", to: STDOUT_FILENO)
            if let failure = status.failure { writeLine("   \(failure)", to: STDOUT_FILENO) }
            if let result = queue.output(of: status.step) {
                try printOutput(result, format: output.format, top: output.top)
            }
        }
        if !allCompleted { throw .cluster("not every step completed (see above)") }
    }
}

import ArgumentParser
import ElasticFlow

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

    @Option(name: .long, help: ArgumentHelp("For wordcount: print only the N most frequent words.", valueName: "N"))
    var top: Int?

    @Option(name: .long, help: "For wordcount: text, tsv or json.")
    var format: WordCountFormat = .text

    @Option(name: .long, help: ArgumentHelp("Target parcel size (overrides the file).", valueName: "SIZE"))
    var parcelSize: String?

    @Flag(name: .long, help: "Log every parcel event and print the step summary on standard error.")
    var verbose = false

    @OptionGroup(title: "Overrides")
    var cluster: ClusterOptions

    @Argument(help: ArgumentHelp("Files to process; '-' reads standard input.", valueName: "FILE"))
    var files: [String] = []

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one FILE ('-' for standard input)") }
        if let top, top < 1 { throw ValidationError("--top must be at least 1") }
    }

    func run() throws {
        do throws(ElasticFlowError) {
            let file = try ClusterFile.load(config)
            let cookie = try Cookie.resolve(secret: cluster.cookie, file: cluster.cookieFile ?? file.cookieFile)
            var configuration = try file.configuration(cookie: cookie)
            if let workers = try cluster.workerAddresses() { configuration.workers = workers }
            try cluster.apply(to: &configuration, parcelSize: parcelSize)
            var parameters: [String: String] = [:]
            for pair in param {
                guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                    throw .invalidArgument("invalid --param '\(pair)': expected KEY=VALUE")
                }
                parameters[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
            let report = try runOnCluster(
                configuration: configuration, task: task, sources: files.map(DataSource.init(argument:)),
                options: TaskOptions(lowercase: lowercase, parameters: parameters),
                interceptors: verbose ? [LoggingInterceptor(verbose: true)] : [])
            switch report.output {
            case .wordCount(let counter):
                try counter.write(format: format, limit: top, toFileDescriptor: STDOUT_FILENO)
            case .value(let value):
                writeLine(value.description, to: STDOUT_FILENO)
            }
            if verbose { logLine(report.summary.description) }
        } catch {
            fail(error.description)
        }
    }
}

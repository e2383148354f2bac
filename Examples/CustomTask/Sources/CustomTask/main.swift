// custom-task: one program, both roles, as every ElasticFlow cluster with a task of its own needs
// (the `elasticflow worker` command knows only the standard tasks).
//
//     ELASTICFLOW_COOKIE=secret custom-task worker --listen 127.0.0.1:7001
//     ELASTICFLOW_COOKIE=secret custom-task run --workers 127.0.0.1:7001,127.0.0.1:7002 FILE...
//
// `worker` prints `listening on HOST:PORT` on standard output and serves until SIGTERM or SIGINT
// (then stops gracefully); `run` is the master: it prints `letter count` lines, a to z, for the
// letters the files hold. Logs go to standard error through swift-log.
import Dispatch
import ElasticFlow
import Foundation
import Logging

/// A bad command line: one line on standard error and exit status 2.
func usage(_ message: String) -> Never {
    FileHandle.standardError.write(Data("custom-task: error: \(message)\n".utf8))
    exit(2)
}

/// The value after `flag` in `arguments`, removed from them with it.
func take(_ flag: String, from arguments: inout [String]) -> String? {
    guard let index = arguments.firstIndex(of: flag) else { return nil }
    guard index + 1 < arguments.count else { usage("\(flag) needs a value") }
    let value = arguments[index + 1]
    arguments.removeSubrange(index...index + 1)
    return value
}

func serve(_ arguments: [String], tasks: TaskRegistry, cookie: Cookie, logger: Logger) throws(ElasticFlowError) {
    var arguments = arguments
    guard let listen = take("--listen", from: &arguments) else { usage("worker needs --listen HOST:PORT") }
    let threads = take("--threads", from: &arguments)
    guard arguments.isEmpty else { usage("unexpected '\(arguments[0])'") }
    var configuration = WorkerConfiguration(listen: try NodeAddress(parsing: listen), cookie: cookie)
    if let threads {
        guard let count = Int(threads) else { usage("--threads takes a number, not '\(threads)'") }
        configuration.threads = count
    }
    try configuration.validate()
    let worker = try Worker(configuration: configuration, tasks: tasks, logger: logger)
    // SIGTERM and SIGINT become a graceful shutdown: parcels in progress are answered first.
    var sources: [any DispatchSourceSignal] = []
    for number in [SIGTERM, SIGINT] {
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number)
        source.setEventHandler { worker.shutdown() }
        source.resume()
        sources.append(source)
    }
    try worker.start()
    // Unbuffered: a parent waits for this line.
    FileHandle.standardOutput.write(Data("listening on \(worker.address)\n".utf8))
    worker.wait()
    withExtendedLifetime(sources) {}
}

func master(_ arguments: [String], tasks: TaskRegistry, cookie: Cookie, logger: Logger) throws(ElasticFlowError) {
    var arguments = arguments
    guard let list = take("--workers", from: &arguments) else { usage("run needs --workers HOST:PORT,...") }
    let alone = arguments.contains("--no-master-work")
    arguments.removeAll { $0 == "--no-master-work" }
    guard !arguments.isEmpty else { usage("run needs at least one FILE") }
    if let flag = arguments.first(where: { $0.hasPrefix("--") }) { usage("unknown option '\(flag)'") }
    let workers = try list.split(separator: ",").map { (text) throws(ElasticFlowError) in
        try NodeAddress(parsing: String(text))
    }
    var configuration = ClusterConfiguration(workers: workers, cookie: cookie)
    configuration.masterProcesses = !alone
    configuration.parcelSize = 64 << 10  // small parcels: the example's files are small
    let master = Master(configuration: configuration, tasks: tasks, logger: logger)
    master.add(LoggingInterceptor(verbose: false, logger: logger))
    let report = try master.run(task: LetterFrequencies.name, sources: arguments.map { DataSource.file($0) })
    guard case .value(let value) = report.output else { throw .cluster("the task returned no value") }
    guard case .dictionary(let counts) = value else {
        // No letter at all: an empty reduction.
        return
    }
    for (letter, count) in counts.sorted(by: { $0.key < $1.key }) {
        print(letter, count.intValue ?? 0)
    }
}

LoggingSystem.bootstrap(StreamLogHandler.standardError)
var logger = Logger(label: "custom-task")
logger.logLevel =
    ProcessInfo.processInfo.environment["CUSTOM_TASK_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) }
    ?? .notice
var arguments = Array(CommandLine.arguments.dropFirst())
guard let role = arguments.first else { usage("give 'worker --listen HOST:PORT' or 'run --workers ... FILE...'") }
arguments.removeFirst()
do throws(ElasticFlowError) {
    let tasks = try LetterFrequencies.registry()
    let cookie = try Cookie.resolve(secret: nil, file: nil)  // ELASTICFLOW_COOKIE
    switch role {
    case "worker": try serve(arguments, tasks: tasks, cookie: cookie, logger: logger)
    case "run": try master(arguments, tasks: tasks, cookie: cookie, logger: logger)
    default: usage("unknown command '\(role)': worker or run")
    }
} catch {
    FileHandle.standardError.write(Data("custom-task: error: \(error.description)\n".utf8))
    exit(1)
}

// Generated from README.md by scripts/check_snippets.py --readme: edit README.md, not this file.

// README.md, runnable block 1
import ElasticFlow
import Logging

// One node, every core.
let (counter, stats) = try LocalWordCount.run([.file("big.txt")], options: WordCountOptions(lowercase: true))
for entry in counter.sorted(limit: 10) { print(entry.string, entry.count) }
print("\(stats.bytes) bytes")

// Directories and file lists, as the CLI takes them (every regular file below, byte-wise sorted).
let names = try SourceList.names(inListAt: "list0", separator: .nul)  // find -print0 > list0
let list = try SourceList(expanding: ["corpus/"] + names, unreadable: .skip)
for entry in list.skipped { print("skipped:", entry.reason) }
let (all, _) = try LocalWordCount.run(list.sources)  // or master.run(task:sources:)
print("corpus:", all.total, "words")

// README.md, runnable block 2
// Your own task: a Flow pipeline over a parcel's lines, and how results combine. Every node's
// registry must hold it: the master's (Master(configuration:tasks:)) and the workers'.
var tasks = TaskRegistry.standard
try tasks.register("line-count", FlowTask(Flow.lines.count()))
try tasks.register(
    "longest",
    FlowTask(
        Flow.lines.reduce(into: "") { best, line in
            if line.count > best.count { best = line }
        },
        aggregator: CustomAggregator(name: "longest") { acc, next in
            (acc?.stringValue?.count ?? -1) >= (next.stringValue?.count ?? 0) ? acc! : next
        }))

var logger = Logger(label: "my-app")
logger.logLevel = .notice
let cookie = try Cookie("a shared secret")  // or Cookie(contentsOfFile: "cookie")
let listen = try NodeAddress(parsing: "127.0.0.1:0")  // port 0: any free port (worker.address)
let worker = try Worker(
    configuration: WorkerConfiguration(listen: listen, cookie: cookie), tasks: tasks, logger: logger)
try worker.start()

var configuration = ClusterConfiguration(workers: [worker.address], cookie: cookie)
configuration.compression = .lz4
configuration.masterProcesses = false  // every parcel goes to the worker
configuration.heartbeatTimeout = .seconds(5)  // time-outs are Durations
let master = Master(configuration: configuration, tasks: tasks, logger: logger)
// Interceptors see every event: LoggingInterceptor logs them, EventStream yields them (`for await`).
master.add(LoggingInterceptor(verbose: false, logger: logger))
let report = try master.run(task: "wordcount", sources: [.file("big.txt")])
print(report.summary)
let lines = try master.run(task: "line-count", sources: [.file("big.txt")])
if case .value(let count) = lines.output { print("lines:", count) }
// From async code: the step runs on its own thread, and cancelling the task cancels it (as
// Ctrl-C does); the report is Sendable. `Worker.run()` serves until its task is cancelled.
let later = try await master.run(task: "longest", sources: [.file("big.txt")])
if case .value(let line) = later.output { print("longest:", line.stringValue?.count ?? 0, "characters") }
// Or as swift-service-lifecycle services (product ElasticFlowService): SIGTERM drains the worker.
// try await ServiceGroup(configuration: .init(services: [WorkerService(worker)],
//                                             gracefulShutdownSignals: [.sigterm], logger: logger)).run()

// README.md, runnable block 3
// Your own data, distributed like a file (copy mode): byte chunks (`SequenceSource`), records
// as lines (`LineSource`) or an `AsyncSequence` (`AsyncSequenceSource`), or any `ChunkSource`.
let rows = LineSource(name: "rows", lines: ["first record", "second record"])
let fromApp = try master.run(task: "wordcount", sources: [.custom(rows)])
print("rows:", fromApp.summary.receiptsClosed, "receipts")

// Steps, like EMR: a queue with a journal, cancel, retry. Steps name sources: a path, or a
// source registered by name (a journaled step needs it restartable: a resume reads it again).
let queue = try StepQueue(master: master, stepData: "steps", sources: SourceRegistry([rows]))
let step = try queue.add(StepDefinition(name: "count", sources: ["big.txt"], actionOnFailure: .cancelAndWait))
try queue.add(StepDefinition(name: "rows", sources: ["rows"]))
queue.run()
print(queue.list().map { "\($0.step) \($0.state)" })
if case .wordCount(let counted) = queue.output(of: step) { print("step \(step):", counted.total, "words") }
worker.shutdown()
worker.wait()

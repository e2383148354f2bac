import Foundation
import Testing

@testable import ElasticFlow

/// The `async` entry points: a step awaited from a task (and its `Sendable` report carried out of
/// a detached one), cancelled through the task, a queue cancelled the same way, an in-process
/// worker served until its task is cancelled, and a counter shared by threads.
@Suite(.serialized) struct AsyncAPITests {
    @Test func aStepAwaitedInADetachedTaskReturnsItsSendableReport() async throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 81)
        let text = generator.generate(byteCount: 500_000)
        let path = try directory.file("t.txt", text)
        let master = try StepQueueTests.localMaster()
        let report = try await Task.detached {
            try await master.run(task: "wordcount", sources: [.file(path)], options: TaskOptions(lowercase: true))
        }.value
        guard case .wordCount(let counter) = report.output else {
            Issue.record("no word count")
            return
        }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: true))
        #expect(report.summary.receiptsClosed == report.summary.parcels)
    }

    @Test func cancellingTheTaskCancelsTheStep() async throws {
        // A source far longer than the test: the step ends by the cancel, however late it lands
        // on a busy machine (or, if the cancel is lost, after about a minute, and the test fails).
        let master = try StepQueueTests.localMaster()
        let progress = ReliabilityTests.Progress()
        master.add(progress)
        let step = Task {
            try await master.run(
                task: "slow-wordcount", sources: [.custom(LongSource())],
                options: TaskOptions(parameters: ["delay-ms": "10"]))
        }
        while progress.aggregatedCount < 3 { try await Task.sleep(for: .milliseconds(10)) }
        step.cancel()
        let outcome = await step.result
        guard case .failure(let error) = outcome else {
            Issue.record("a cancelled step completed")
            return
        }
        #expect("\(error)".contains("cancelled"), "\(error)")
    }

    @Test func cancellingTheTaskCancelsTheQueuesRunningAndPendingSteps() async throws {
        let directory = try TemporaryDirectory()
        let master = try StepQueueTests.localMaster()
        let progress = ReliabilityTests.Progress()
        master.add(progress)
        let queue = try StepQueue(
            master: master, stepData: directory.path("steps"), sources: SourceRegistry([LongSource()]))
        let slow = StepDefinition(
            name: "slow", task: "slow-wordcount", sources: [LongSource().name],
            options: TaskOptions(parameters: ["delay-ms": "10"]))
        let first = try queue.add(slow)
        let second = try queue.add(slow)
        let running = Task { await queue.run() }
        while progress.aggregatedCount < 3 { try await Task.sleep(for: .milliseconds(10)) }
        running.cancel()
        #expect(await running.value == false)
        let states = Dictionary(uniqueKeysWithValues: queue.list().map { ($0.step, $0.state) })
        #expect(states[first] == .cancelled && states[second] == .cancelled, "\(states)")
        // The journal says so too: the first can be retried.
        let journaled = try StepJournal.steps(in: directory.path("steps"))
        #expect(journaled.map(\.state) == [.cancelled], "\(journaled.map(\.state))")
    }

    @Test func aWorkerServesUntilItsTaskIsCancelledThenShutsDownGracefully() async throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 84)
        let text = generator.generate(byteCount: 600_000)
        let path = try directory.file("t.txt", text)
        let cookie = try Cookie("async")
        let worker = try Self.inProcessWorker(cookie: cookie)
        let serving = Task { try await worker.run() }
        let (report, configuration) = try await Self.count(path, onlyOn: worker, cookie: cookie)
        guard case .wordCount(let counter) = report.output else {
            Issue.record("no word count")
            return
        }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        #expect(report.summary.parcelsByNode.keys.allSatisfy { $0 != "master" })
        serving.cancel()
        try await serving.value  // returns once the worker has stopped
        let after = try? await Master(configuration: configuration).run(task: "wordcount", sources: [.file(path)])
        #expect(after == nil, "a stopped worker serves no more")
    }

    /// A worker in this process on a free loopback port, not yet started.
    static func inProcessWorker(cookie: Cookie) throws -> Worker {
        try Worker(configuration: WorkerConfiguration(listen: try NodeAddress(parsing: "127.0.0.1:0"), cookie: cookie))
    }

    /// Waits until `worker` listens, then counts `path` on it alone (the master does no work).
    /// - Returns: the report and the configuration, to try the worker again.
    static func count(_ path: String, onlyOn worker: Worker, cookie: Cookie) async throws
        -> (StepReport, ClusterConfiguration)
    {
        while worker.address.port == 0 { try await Task.sleep(for: .milliseconds(10)) }
        var configuration = ClusterConfiguration(workers: [worker.address], cookie: cookie)
        configuration.masterProcesses = false
        configuration.parcelSize = 32 << 10
        return (
            try await Master(configuration: configuration).run(task: "wordcount", sources: [.file(path)]), configuration
        )
    }

    @Test func aCounterSharedByThreadsCountsEveryWord() throws {
        let shared = try WordCounter(partitions: 8)
        let words = (0..<64).map { Array("w\($0) ".utf8) }
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            let own = try! WordCounter(partitions: 8)
            for round in 0..<200 {
                try! shared.feed(words[(thread + round) % words.count])
                try! own.add(words[round % words.count].dropLast().map { $0 })
                _ = shared.distinct
                _ = shared.count(of: "w1")
            }
            try! shared.merge(own)
            _ = shared.sorted(limit: 3)
        }
        try shared.finish()
        #expect(shared.total == 8 * 200 * 2)
        #expect(shared.distinct == 64)
        try shared.merge(shared)
        #expect(shared.total == 8 * 200 * 4)
    }
}

/// 100 MB of generated text in 64 KiB chunks, the same on every pass: at 16 KiB parcels of 10 ms
/// each, a step over it takes about a minute, far longer than a test waits.
struct LongSource: ChunkSource {
    var name: String { "long" }
    var isRestartable: Bool { true }
    func chunks() throws -> any ChunkReader { Reader() }
    struct Reader: ChunkReader {
        var generator = CorpusGenerator(seed: 85)
        var left = 1_600
        mutating func next() throws -> [UInt8]? {
            guard left > 0 else { return nil }
            left -= 1
            return generator.generate(byteCount: 64 << 10)
        }
    }
}

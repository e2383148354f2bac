import Foundation
import Testing

@testable import ElasticFlow

/// The app's own sources (`ChunkSource`): sequences of chunks, records as lines and async
/// sequences, counted on one node and across worker processes (one killed mid-step), journaled
/// and resumed, and refused where they cannot work.
@Suite(.serialized) struct CustomSourceTests {
    /// `text` in chunks of varying sizes (1 byte to 8 KiB), so words, CRLFs and lines straddle
    /// chunk boundaries everywhere.
    static func chunks(of text: [UInt8], seed: UInt64) -> [[UInt8]] {
        var random = RandomText(state: seed)
        var chunks: [[UInt8]] = []
        var start = 0
        while start < text.count {
            let size = 1 + Int(random.next() % (random.next() % 2 == 0 ? 16 : 8192))
            let end = min(text.count, start + size)
            chunks.append(Array(text[start..<end]))
            if random.next() % 7 == 0 { chunks.append([]) }  // empty chunks are skipped
            start = end
        }
        return chunks
    }

    static func corpus(seed: UInt64, bytes: Int) -> [UInt8] {
        var generator = CorpusGenerator(seed: seed)
        return generator.generate(byteCount: bytes) + Array("\r\nlast\twords  without newline".utf8)
    }

    static func rendered(_ report: StepReport) throws -> [UInt8] {
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        return try counter.rendered(format: .text)
    }

    @Test func chunksCountExactlyAsTheirBytesAtManyParcelSizes() throws {
        let text = Self.corpus(seed: 61, bytes: 300_000)
        let source = SequenceSource(name: "chunks", chunks: Self.chunks(of: text, seed: 1))
        for parcelSize in [1, 100, 4 << 10, 1 << 20] {
            let master = try StepQueueTests.localMaster(parcelSize: parcelSize)
            let report = try master.run(task: "wordcount", sources: [.custom(source)])
            #expect(try Self.rendered(report) == Reference.text(text, lowercase: false), "parcel size \(parcelSize)")
            let lowered = try master.run(
                task: "wordcount", sources: [.custom(source)], options: TaskOptions(lowercase: true))
            #expect(try Self.rendered(lowered) == Reference.text(text, lowercase: true))
        }
    }

    @Test func recordsBecomeLinesForAFlowTask() throws {
        let records = (0..<5_000).map { "record \($0) of \($0 % 17) words" + String(repeating: " w", count: $0 % 17) }
        let text = Array(records.map { $0 + "\n" }.joined().utf8)
        let master = try StepQueueTests.localMaster(parcelSize: 8 << 10)
        let report = try master.run(task: "line-lengths", sources: [.custom(LineSource(name: "rows", lines: records))])
        guard case .value(let histogram) = report.output else {
            Issue.record("no histogram")
            return
        }
        #expect(histogram == (try LocalTask.run(named: "line-lengths", text: text)))
        let words = try master.run(task: "wordcount", sources: [.custom(LineSource(name: "rows", lines: records))])
        #expect(try Self.rendered(words) == Reference.text(text, lowercase: false))
    }

    @Test func anAsyncSequenceIsReadThroughItsBoundedHandOver() throws {
        let text = Self.corpus(seed: 62, bytes: 400_000)
        let chunks = Self.chunks(of: text, seed: 2)
        let stream = AsyncChunks(chunks: chunks)
        let master = try StepQueueTests.localMaster(parcelSize: 16 << 10)
        let source = AsyncSequenceSource(name: "stream", restartable: true, chunks: stream)
        let report = try master.run(task: "wordcount", sources: [.custom(source), .custom(source)])
        #expect(try Self.rendered(report) == Reference.text(text + [0x0A] + text, lowercase: false))
    }

    @Test func aSourceThatThrowsFailsTheStepNamingIt() throws {
        let master = try StepQueueTests.localMaster()
        let failing = FailingSource()
        let error = #expect(throws: ElasticFlowError.self) {
            _ = try master.run(task: "wordcount", sources: [.custom(failing)])
        }
        #expect(
            error?.description.contains("source 'flaky db': connection lost after 3 rows") == true,
            "\(String(describing: error))")
        let asyncFailing = AsyncSequenceSource(name: "feed", restartable: false, chunks: FailingAsyncChunks())
        let asyncError = #expect(throws: ElasticFlowError.self) {
            _ = try master.run(task: "wordcount", sources: [.custom(asyncFailing)])
        }
        #expect(asyncError?.description.contains("source 'feed': connection lost after 3 rows") == true)
    }

    @Test func aCustomSourceCrossesWorkerProcessesAndSurvivesAKilledWorker() throws {
        let text = Self.corpus(seed: 63, bytes: 2_000_000)
        let source = SequenceSource(name: "app rows", chunks: Self.chunks(of: text, seed: 3))
        let workers = [try TestWorker(cookie: "c"), try TestWorker(cookie: "c")]
        var configuration = try ReliabilityTests.configuration(workers, cookie: "c")
        configuration.compression = .lz4
        let master = Master(configuration: configuration)
        let progress = ReliabilityTests.Progress()
        master.add(progress)
        let step = ReliabilityTests.BackgroundStep(
            master, task: "slow-wordcount", sources: [.custom(source)],
            options: TaskOptions(parameters: ["delay-ms": "2"]))
        progress.wait(forAggregated: 20)
        kill(workers[0].process.processIdentifier, SIGKILL)
        let report = try step.wait()
        #expect(try Self.rendered(report) == Reference.text(text, lowercase: false))
        #expect(report.summary.retries >= 1, "the killed worker held parcels that went elsewhere")
        #expect(report.summary.receiptsClosed == report.summary.parcels)
        let remote = report.summary.parcelsByNode.filter { $0.key != "master" }.values.reduce(0, +)
        #expect(remote > 0, "workers processed parcels of the custom source")
    }

    @Test func aJournaledStepOverACustomSourceIsRetriedAndAChangedSourceIsCaught() throws {
        let directory = try TemporaryDirectory()
        let text = Self.corpus(seed: 64, bytes: 1_500_000)
        let source = SequenceSource(name: "rows", chunks: Self.chunks(of: text, seed: 4))
        let steps = directory.path("steps")
        do {
            let master = try StepQueueTests.localMaster()
            let progress = ReliabilityTests.Progress()
            master.add(progress)
            let queue = try StepQueue(master: master, stepData: steps, sources: SourceRegistry([source]))
            let step = try queue.add(
                StepDefinition(
                    name: "slow", task: "slow-wordcount", sources: ["rows"],
                    options: TaskOptions(parameters: ["delay-ms": "5"])))
            let runner = Thread { queue.run() }
            runner.start()
            progress.wait(forAggregated: 20)
            #expect(queue.cancel(step))
            while queue.list().first?.state == .running { usleep(10_000) }
            #expect(queue.list().first?.state == .cancelled)
        }
        // Resumed by another master with different bytes under the same name: refused, naming it.
        // A byte of the first parcels, which were cut (and journaled) before the cancel.
        var changed = text
        changed[100] = changed[100] == UInt8(ascii: "Z") ? UInt8(ascii: "Y") : UInt8(ascii: "Z")
        let master = try StepQueueTests.localMaster()
        let error = #expect(throws: ElasticFlowError.self) {
            _ = try StepExecution.resume(
                step: 1, master: master, stepData: steps,
                sources: SourceRegistry([SequenceSource(name: "rows", chunks: Self.chunks(of: changed, seed: 4))]))
        }
        #expect(error?.description.contains("'rows' from byte") == true, "\(String(describing: error))")
        #expect(error?.description.contains("the sources changed") == true)
        // With the same bytes it finishes, processing only what was not aggregated.
        let report = try StepExecution.resume(
            step: 1, master: master, stepData: steps, sources: SourceRegistry([source]))
        #expect(try Self.rendered(report) == Reference.text(text, lowercase: false))
        let processedAgain = report.summary.parcelsByNode.values.reduce(0, +)
        #expect(processedAgain < report.summary.parcels, "only unaggregated parcels are processed again")
    }

    @Test func aSourceThatCannotRestartIsRefusedForAJournaledStepAndForSharedInput() throws {
        let directory = try TemporaryDirectory()
        let once = SequenceSource(name: "once", restartable: false, chunks: [Array("a b\n".utf8)])
        let queue = try StepQueue(
            master: try StepQueueTests.localMaster(), stepData: directory.path("steps"), sources: SourceRegistry([once])
        )
        let step = try queue.add(StepDefinition(name: "s", sources: ["once"]))
        #expect(queue.run() == false)
        let failure = queue.list().first { $0.step == step }?.failure ?? ""
        #expect(failure.contains("source 'once' cannot restart"), "\(failure)")
        // Without a journal it runs.
        let inMemory = try StepQueue(master: try StepQueueTests.localMaster(), sources: SourceRegistry([once]))
        let ran = try inMemory.add(StepDefinition(name: "s", sources: ["once"]))
        #expect(inMemory.run())
        guard case .wordCount(let counter) = inMemory.output(of: ran) else {
            Issue.record("no output")
            return
        }
        #expect(try counter.rendered(format: .text) == Array("a 1\nb 1\n".utf8))
        // Shared input needs files every node can read.
        var configuration = ClusterConfiguration(workers: [], cookie: try Cookie("local"))
        configuration.sharedInput = true
        let error = #expect(throws: ElasticFlowError.self) {
            _ = try Master(configuration: configuration).run(task: "wordcount", sources: [.custom(once)])
        }
        #expect(error?.description.contains("source 'once' is the app's own and cannot be shared") == true)
    }
}

/// An `AsyncSequence` of fixed chunks that yields between them, as a real producer would.
struct AsyncChunks: AsyncSequence, Sendable {
    let chunks: [[UInt8]]
    struct AsyncIterator: AsyncIteratorProtocol {
        var index = 0
        let chunks: [[UInt8]]
        mutating func next() async -> [UInt8]? {
            guard index < chunks.count else { return nil }
            await Task.yield()
            index += 1
            return chunks[index - 1]
        }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(chunks: chunks) }
}

struct SourceFailure: Error, CustomStringConvertible {
    var description: String { "connection lost after 3 rows" }
}

/// Three rows, then an error (a source whose reads throw).
struct FailingSource: ChunkSource {
    var name: String { "flaky db" }
    var isRestartable: Bool { false }
    func chunks() throws -> any ChunkReader { Reader() }
    struct Reader: ChunkReader {
        var rows = 0
        mutating func next() throws -> [UInt8]? {
            rows += 1
            guard rows <= 3 else { throw SourceFailure() }
            return Array("row \(rows)\n".utf8)
        }
    }
}

struct FailingAsyncChunks: AsyncSequence, Sendable {
    struct AsyncIterator: AsyncIteratorProtocol {
        var rows = 0
        mutating func next() async throws -> [UInt8]? {
            rows += 1
            guard rows <= 3 else { throw SourceFailure() }
            return Array("row \(rows)\n".utf8)
        }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
}

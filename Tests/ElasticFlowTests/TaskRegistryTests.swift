import Dispatch
import Synchronization
import Testing

@testable import ElasticFlow

@Suite struct TaskRegistryTests {
    @Test func standardRegistryShipsTheBuiltInTasks() throws {
        let registry = TaskRegistry.standard
        #expect(
            registry.names == [
                "line-lengths", "longest-line", "parcel-count", "slow-wordcount", "word-frequencies", "wordcount",
            ])
        #expect(try registry.task(named: "wordcount") is WordCountTask)
        #expect(try registry.task(named: "line-lengths") is FlowTask)
        #expect(registry.contains("longest-line"))
        #expect(!registry.contains("nope"))
    }

    @Test func registrationErrors() throws {
        var registry = TaskRegistry()
        #expect(registry.names.isEmpty)
        try registry.register("count", FlowTask(Flow.lines.count()))
        #expect(throws: ElasticFlowError.invalidArgument("task 'count' is already registered")) {
            try registry.register("count", WordCountTask())
        }
        #expect(throws: ElasticFlowError.self) { try registry.register("", WordCountTask()) }
        let longest = String(repeating: "é", count: 127) + "x"  // 255 bytes
        try registry.register(longest, WordCountTask())
        #expect(throws: ElasticFlowError.self) { try registry.register(longest + "y", WordCountTask()) }
        #expect(registry.names == ["count", longest])

        do {
            _ = try registry.task(named: "x")
            Issue.record("an unknown task was found")
        } catch {
            #expect(error.description.hasPrefix("unknown task 'x'"))
            #expect(error.description.contains("count"))
        }
        #expect(throws: ElasticFlowError.self) { try TaskRegistry().task(named: "wordcount") }
        // The copy a user extends leaves the standard registry alone.
        var extended = TaskRegistry.standard
        try extended.register("count", FlowTask(Flow.lines.count()))
        #expect(!TaskRegistry.standard.contains("count"))
    }
}

@Suite struct WordCountTaskTests {
    static func corpus(seed: UInt64, bytes: Int) -> [UInt8] {
        var generator = CorpusGenerator(seed: seed)
        return generator.generate(byteCount: bytes)
    }

    @Test(arguments: [false, true])
    func parcelsAggregateToTheWholeTextsCount(lowercase: Bool) throws {
        let text = Self.corpus(seed: lowercase ? 31 : 32, bytes: 400_000)
        let whole = try WordCounter(lowercase: lowercase)
        try whole.feed(text)
        try whole.finish()

        let task = WordCountTask()
        let options = TaskOptions(lowercase: lowercase)
        let parcels = TestParcels.cut(text, size: 16_384)
        let results = try TestParcels.results(of: task, parcels, options: options)
        var generator = SeededGenerator(seed: 6)
        for _ in 0..<2 {
            let counter = try #require(
                TestParcels.aggregate(task, results.shuffled(using: &generator), options: options).asWordCount)
            #expect(counter.sorted() == whole.sorted())
            #expect(counter.lowercases == lowercase)
            #expect(counter.partitions == 16)
        }
        let expected = Reference.counts(text, lowercase: lowercase)
        #expect(whole.sorted().map(\.word) == expected.map(\.0))
    }

    @Test func reusesCountersSafelyAcrossThreads() throws {
        let text = Self.corpus(seed: 33, bytes: 600_000)
        let whole = try WordCounter(lowercase: true)
        try whole.feed(text)
        try whole.finish()

        let task = WordCountTask(partitions: 4)
        let parcels = TestParcels.cut(text, size: 4_096)
        let options = TaskOptions(lowercase: true)
        let results = Mutex([[UInt8]?](repeating: nil, count: parcels.count))
        let failures = Atomic<Int>(0)
        // Alternate lowercase and plain parcels so both kinds of pooled counter are in play.
        DispatchQueue.concurrentPerform(iterations: parcels.count * 2) { index in
            let parcel = parcels[index / 2]
            let lowercase = index % 2 == 0
            do {
                let result = try parcel.withUnsafeBytes {
                    try task.process(ParcelBytes($0), options: TaskOptions(lowercase: lowercase))
                }
                if lowercase { results.withLock { $0[index / 2] = result } }
            } catch {
                failures.add(1, ordering: .relaxed)
            }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
        let gathered = results.withLock { $0 }.map { $0! }
        let counter = try #require(TestParcels.aggregate(task, gathered, options: options).asWordCount)
        #expect(counter.sorted() == whole.sorted())
        #expect(counter.partitions == 4)
    }

    @Test func counterPoolIsBoundedAndClearsCounters() throws {
        let pool = CounterPool(limit: 2)
        let taken = try (0..<4).map { _ in try pool.take(partitions: 16, lowercase: false) }
        try taken[0].counter.feed(Array("a b".utf8))
        taken[0].counter.removeAll()
        for transfer in taken { pool.give(transfer) }
        #expect(pool.idleCount == 2)
        let again = try pool.take(partitions: 16, lowercase: false)
        #expect(again.counter.distinct == 0)
        #expect(!again.counter.lowercases)
        #expect(try pool.take(partitions: 16, lowercase: true).counter.lowercases)
    }

    @Test func malformedResultsAndBadPartitionsThrow() throws {
        let aggregation = try WordCountTask().makeAggregation(options: .init())
        #expect(throws: ElasticFlowError.self) { try aggregation.absorb([1, 2, 3]) }
        #expect(throws: ElasticFlowError.self) { try WordCountTask(partitions: 0).runLocally(parcels: [[0x61]]) }
        let output = try WordCountTask().runLocally(parcels: [Array("b a\n".utf8), Array("a\n".utf8), []])
        #expect(output.asWordCount?.sorted().map(\.string) == ["a", "b"])
    }
}

@Suite struct ExampleTaskTests {
    static let text: [UInt8] = {
        var generator = CorpusGenerator(seed: 41)
        // Invalid UTF-8, CRs and empty lines too.
        return generator.generate(byteCount: 200_000) + [0xFF, 0x61, 0x0A, 0x0A, 0x62, 0x0D, 0x0A]
            + Array(String(repeating: "z", count: 80).utf8) + [0x0A]
            + Array(String(repeating: "y", count: 80).utf8)
    }()

    static func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        if bytes.last == 0x0A { lines.removeLast() }
        return lines
    }

    @Test func lineLengthsIsAHistogramOfByteLengths() throws {
        var expected: [String: Int] = [:]
        for line in Self.lines(Self.text) { expected[String(line.count), default: 0] += 1 }
        #expect(expected["0"] == 1 && expected["80"] == 2)

        let task = try TaskRegistry.standard.task(named: "line-lengths")
        let results = try TestParcels.results(of: task, TestParcels.cut(Self.text, size: 5_000))
        var generator = SeededGenerator(seed: 7)
        let output = try TestParcels.aggregate(task, results.shuffled(using: &generator))
        #expect(output.asValue == expected.flowValue)
    }

    @Test func longestLineIsDeterministicWhateverTheCutAndOrder() throws {
        let task = try TaskRegistry.standard.task(named: "longest-line")
        // Two lines of 80 bytes: "y…" wins the tie against "z…" by its bytes.
        let expected: FlowValue = ["length": 80, "line": .string(String(repeating: "y", count: 80))]
        var generator = SeededGenerator(seed: 8)
        for size in [1, 3_000, 50_000, 1_000_000] {
            let results = try TestParcels.results(of: task, TestParcels.cut(Self.text, size: size))
            let output = try TestParcels.aggregate(task, results.shuffled(using: &generator))
            #expect(output.asValue == expected)
        }
        #expect(try task.runLocally(parcels: [[]]).asValue == .null)
        let tie = [Array("bb\nab\n".utf8), Array("b\nba\naa\n".utf8)]
        #expect(try task.runLocally(parcels: tie).asValue == ["length": 2, "line": "aa"])
        #expect(try task.runLocally(parcels: tie.reversed()).asValue == ["length": 2, "line": "aa"])
        let aggregation = try task.makeAggregation(options: .init())
        try aggregation.absorb((["length": 1, "line": "a"] as FlowValue).encoded())
        #expect(throws: ElasticFlowError.self) { try aggregation.absorb(FlowValue(3).encoded()) }
    }

    @Test(arguments: [false, true])
    func wordFrequenciesMatchesTheBuiltInWordCount(lowercase: Bool) throws {
        var generator = CorpusGenerator(seed: 42)
        let text = generator.generate(byteCount: 150_000)
        let whole = try WordCounter(lowercase: lowercase)
        try whole.feed(text)
        try whole.finish()
        var expected: [String: FlowValue] = [:]
        for entry in whole.sorted() { expected[entry.string] = .int(Int64(entry.count)) }

        let task = try TaskRegistry.standard.task(named: "word-frequencies")
        let parcels = TestParcels.cut(text, size: 10_000)
        for stages in ["1", "5"] {
            let options = TaskOptions(lowercase: lowercase, parameters: ["stages": stages])
            #expect(try task.runLocally(parcels: parcels, options: options).asValue == .dictionary(expected))
        }
        #expect(throws: ElasticFlowError.self) {
            try task.runLocally(parcels: parcels, options: TaskOptions(parameters: ["stages": "many"]))
        }
    }
}

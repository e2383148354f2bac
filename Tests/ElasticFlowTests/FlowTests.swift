import Testing

@testable import ElasticFlow

/// Cuts text into parcels of about `size` bytes that end at a newline, as the master does.
enum TestParcels {
    static func cut(_ bytes: [UInt8], size: Int) -> [[UInt8]] {
        var parcels: [[UInt8]] = []
        var start = 0
        while start < bytes.count {
            var end = min(start + size, bytes.count)
            while end < bytes.count && bytes[end - 1] != 0x0A { end += 1 }
            parcels.append(Array(bytes[start..<end]))
            start = end
        }
        return parcels
    }

    /// Runs a task's `process` on every parcel (results in parcel order).
    static func results(of task: some ParcelTask, _ parcels: [[UInt8]], options: TaskOptions = .init()) throws
        -> [[UInt8]]
    {
        try parcels.map { parcel in try parcel.withUnsafeBytes { try task.process(ParcelBytes($0), options: options) } }
    }

    /// Absorbs results in the given order and returns the output.
    static func aggregate(_ task: some ParcelTask, _ results: [[UInt8]], options: TaskOptions = .init()) throws
        -> StepOutput
    {
        let aggregation = try task.makeAggregation(options: options)
        for result in results { try aggregation.absorb(result) }
        return try aggregation.output()
    }
}

extension StepOutput {
    var asValue: FlowValue? {
        if case .value(let value) = self { return value }
        return nil
    }

    var asWordCount: WordCounter? {
        if case .wordCount(let counter) = self { return counter }
        return nil
    }
}

@Suite struct FlowTests {
    static let sample = Array(
        """
        the quick brown fox
        jumps over the lazy dog

          The end, the END.
        caf\u{E9} na\u{EF}ve r\u{E9}sum\u{E9}
        last line without newline
        """.utf8)

    /// The sample's lines, split straightforwardly.
    static var sampleLines: [String] {
        String(decoding: sample, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(
            String.init)
    }

    @Test func linesAreDecodedWithoutNewlines() throws {
        let lines = try Flow.lines.collect().run(on: Self.sample)
        #expect(lines == Self.sampleLines.flowValue)
        #expect(lines.arrayValue?.count == 6)

        #expect(try Flow.lines.collect().run(on: []) == [])
        #expect(try Flow.lines.collect().run(on: Array("a\n".utf8)) == ["a"])
        #expect(try Flow.lines.collect().run(on: Array("\n\nb\r\n".utf8)) == ["", "", "b\r"])
        #expect(try Flow.lines.collect().run(on: [0x61, 0xFF, 0x0A]) == ["a\u{FFFD}"])
    }

    @Test func lineBytesAreExact() throws {
        let lengths = try Flow.lineBytes.map { $0.count }.collect().run(on: [0x61, 0xFF, 0x0A, 0x0A, 0xC3])
        #expect(lengths == [2, 0, 1])
        let bytes = try Flow.lineBytes.reduce(into: [FlowValue]()) { $0.append(.bytes($1)) }.run(on: [0x61, 0xFF, 0x0A])
        #expect(bytes == [.bytes([0x61, 0xFF])])
    }

    @Test func transformationsMatchAStraightforwardComputation() throws {
        // Words longer than three letters, lowercased, with their lengths, from non-empty lines.
        let pipeline = Flow.lines
            .filter { !$0.isEmpty }
            .flatMap { $0.split(separator: " ") }
            .map { $0.lowercased() }
            .compactMap { $0.count > 3 ? "\($0):\($0.count)" : nil }
            .collect()
        let expected = Self.sampleLines.filter { !$0.isEmpty }.flatMap { $0.split(separator: " ") }
            .map { $0.lowercased() }.filter { $0.count > 3 }.map { "\($0):\($0.count)" }
        #expect(try pipeline.run(on: Self.sample) == expected.flowValue)
        #expect(try Flow.lines.count().run(on: Self.sample) == .int(Int64(Self.sampleLines.count)))
    }

    @Test func frequenciesCountEachKey() throws {
        let words = Flow.lines.flatMap { $0.lowercased().split(separator: " ").map(String.init) }
        var expected: [String: Int] = [:]
        for line in Self.sampleLines {
            for word in line.lowercased().split(separator: " ") { expected[String(word), default: 0] += 1 }
        }
        #expect(try words.frequencies().run(on: Self.sample) == expected.flowValue)
        #expect(try words.frequencies().run(on: Self.sample)["the"] == 4)
        #expect(try words.frequencies(by: { String($0.first!) }).run(on: Self.sample)["t"] == 4)
    }

    @Test func reduceStartsFromAFreshAccumulatorForEachParcel() throws {
        let pipeline = Flow.lines.reduce(into: 0) { total, line in total += line.utf8.count }
        #expect(try pipeline.run(on: Array("ab\ncd\n".utf8)) == 4)
        #expect(try pipeline.run(on: Array("ab\ncd\n".utf8)) == 4)
    }

    static let corpus: [UInt8] = {
        var generator = CorpusGenerator(seed: 21, vocabularySize: 3_000)
        return generator.generate(byteCount: 300_000)
    }()

    static func wordFrequencies(stages: Int) -> FlowPipeline {
        Flow.lines
            .flatMap { $0.split(separator: " ").map(String.init) }
            .partition(stages: stages, by: { $0 })
            // Lowercasing after routing sends "The" and "the" to different stages: the default
            // aggregator's per-key sum still merges them into one count.
            .map { $0.lowercased() }
            .reduce(into: [String: Int]()) { counts, word in counts[word, default: 0] += 1 }
    }

    @Test func partitionGivesTheSameResultWhateverTheStageCount() throws {
        var expected: [String: Int] = [:]
        for word in String(decoding: Self.corpus, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            expected[word.lowercased(), default: 0] += 1
        }
        let one = try Self.wordFrequencies(stages: 1).run(on: Self.corpus)
        #expect(one == expected.flowValue)
        for stages in [2, 4, 7, 64] {
            let many = try Self.wordFrequencies(stages: stages).run(on: Self.corpus)
            #expect(many == one)
            #expect(many.encoded() == one.encoded())
        }
    }

    @Test func partitionRoutesEachKeyToExactlyOneStage() throws {
        // Stage results combined by an aggregator that fails on a key seen in two stages.
        let disjoint = CustomAggregator(name: "disjoint") { accumulated, next in
            guard let accumulated else { return next }
            let a = accumulated.dictionaryValue!
            let b = next.dictionaryValue!
            if let shared = a.keys.first(where: { b[$0] != nil }) {
                throw ElasticFlowError.invalidArgument("key \(shared) in two stages")
            }
            return .dictionary(a.merging(b) { x, _ in x })
        }
        let stagesSeen = Flow.lines
            .flatMap { $0.split(separator: " ").map(String.init) }
            .partition(stages: 8, by: { $0 })
            .reduce(into: [String: Int](), combiningWith: disjoint) { counts, word in counts[word, default: 0] += 1 }
        let value = try stagesSeen.run(on: Self.corpus)
        #expect((value.dictionaryValue?.count ?? 0) > 100)

        // The routing is the documented one: FNV-1a of the key modulo the stage count.
        let perStage = Flow(["a", "b", "c", "foobar"])
            .partition(stages: 3, by: { $0 })
            .reduce(into: [String](), combiningWith: .concatenate) { words, word in words.append(word) }
        let order = ["a", "b", "c", "foobar"].sorted { ($0.stableHash % 3, $0) < ($1.stableHash % 3, $1) }
        #expect(try perStage.run(on: []) == order.flowValue)
    }

    @Test func stableHashIsFNV1a() {
        #expect("".stableHash == 0xCBF2_9CE4_8422_2325)
        #expect("a".stableHash == 0xAF63_DC4C_8601_EC8C)
        #expect("foobar".stableHash == 0x8594_4171_F739_67E8)
        #expect(Array("foobar".utf8).stableHash == "foobar".stableHash)
        #expect(("xfoobar".dropFirst() as Substring).stableHash == "foobar".stableHash)
        #expect(1.stableHash == Int64(1).stableHash)
        #expect(FlowValue.int(1).stableHash == StableHash.fnv1a(FlowValue.int(1).encoded()))
    }

    @Test func partitionedStagesErrorsAndEmptyInput() throws {
        let failing = Flow.lines
            .partition(stages: 4, by: { $0 })
            .map { line -> String in
                if line == "boom" { throw ElasticFlowError.invalidArgument("boom") }
                return line
            }
            .reduce(into: 0) { count, _ in count += 1 }
        #expect(try failing.run(on: Array("a\nb\n".utf8)) == 2)
        #expect(throws: ElasticFlowError.invalidArgument("boom")) { try failing.run(on: Array("a\nboom\nc\n".utf8)) }
        #expect(try failing.run(on: []) == 0)

        for stages in [0, -1, 1025] {
            let invalid = Flow.lines.partition(stages: stages, by: { $0 }).frequencies(by: { $0 })
            #expect(throws: ElasticFlowError.self) { try invalid.run(on: Array("x\n".utf8)) }
        }
        let filtered = Flow.lines.partition(stages: 3, by: { $0 }).filter { $0.hasPrefix("k") }
            .flatMap { [$0, $0] }.frequencies(by: { $0 })
        #expect(try filtered.run(on: Array("keep\ndrop\nkeep\nkite\n".utf8)) == ["keep": 4, "kite": 2])
    }

    @Test func flowTaskAggregatesParcelResultsIndependentlyOfOrder() throws {
        let task = FlowTask(Self.wordFrequencies(stages: 4))
        let whole = try Self.wordFrequencies(stages: 1).run(on: Self.corpus)
        let parcels = TestParcels.cut(Self.corpus, size: 8_000)
        #expect(parcels.count > 20)
        #expect(parcels.reduce(0) { $0 + $1.count } == Self.corpus.count)
        let results = try TestParcels.results(of: task, parcels)
        var generator = SeededGenerator(seed: 5)
        for _ in 0..<3 {
            let output = try TestParcels.aggregate(task, results.shuffled(using: &generator))
            #expect(output.asValue == whole)
        }
        #expect(try task.runLocally(parcels: parcels).asValue == whole)
        #expect(try task.runLocally(parcels: []).asValue == .null)
    }

    @Test func flowTaskReadsOptionsAndRefusesTooDeepResults() throws {
        let task = FlowTask(aggregator: .sum) { options in
            let factor = Int(options.parameters["factor"] ?? "1") ?? 1
            return Flow.lines.reduce(into: 0) { total, _ in total += factor }
        }
        let parcels = [Array("a\nb\n".utf8), Array("c\n".utf8)]
        #expect(try task.runLocally(parcels: parcels).asValue == 3)
        #expect(try task.runLocally(parcels: parcels, options: .init(parameters: ["factor": "10"])).asValue == 30)

        let deep = FlowTask(
            FlowPipeline { _ in
                var value = FlowValue.null
                for _ in 0...FlowValue.maximumNestingDepth { value = [value] }
                return value
            })
        #expect(throws: ElasticFlowError.self) { try deep.runLocally(parcels: [[0x61]]) }

        let aggregation = try task.makeAggregation(options: .init())
        #expect(throws: ElasticFlowError.self) { try aggregation.absorb([0xEF, 0x01, 0x03]) }
        #expect(try aggregation.output().asValue == .null)
    }
}

import Testing

@testable import ElasticFlow

@Suite struct WordCounterTests {
    @Test(arguments: [false, true])
    func matchesTheReferenceOnRandomBytesFedInRandomPieces(lowercase: Bool) throws {
        var random = RandomText(state: lowercase ? 11 : 12)
        for trial in 0..<20 {
            let data = random.bytes(Int(random.next() % 20_000))
            let counter = try WordCounter(partitions: [1, 7, 16][trial % 3], lowercase: lowercase)
            var offset = 0
            while offset < data.count {
                let piece = min(data.count - offset, 1 + Int(random.next() % 64))
                try counter.feed(data[offset..<offset + piece])
                offset += piece
            }
            try counter.finish()
            let expected = Reference.counts(data, lowercase: lowercase)
            let actual = counter.sorted()
            #expect(actual.map(\.word) == expected.map(\.0))
            #expect(actual.map(\.count) == expected.map(\.1))
            #expect(counter.total == expected.reduce(0) { $0 + $1.1 })
        }
    }

    @Test func lowercasesOnlyASCIILetters() throws {
        let counter = try WordCounter(lowercase: true)
        try counter.feed(Array("The THE the Été ÉTÉ\n".utf8))
        try counter.finish()
        #expect(counter.count(of: "the") == 3)
        #expect(counter.count(of: "Été") == 1)
        #expect(counter.count(of: "ÉtÉ") == 1)
    }

    @Test func serializesMergesAndRejectsMalformedTables() throws {
        var generator = CorpusGenerator(seed: 5)
        let a = try WordCounter(lowercase: true)
        try a.feed(generator.generate(byteCount: 100_000))
        try a.finish()
        let b = try WordCounter(partitions: 3, lowercase: true)
        try b.merge(serialized: try a.serialized())
        #expect(b.sorted() == a.sorted())
        try b.merge(a)
        #expect(b.total == 2 * a.total)

        let packed = try a.serialized()
        let c = try WordCounter()
        #expect(throws: ElasticFlowError.self) { try c.merge(serialized: Array(packed.dropLast())) }
        #expect(throws: ElasticFlowError.self) { try c.merge(serialized: [0, 1, 2, 3, 4, 5, 6, 7]) }
        #expect(c.distinct == 0)
    }

    @Test func exportsTopNWithTiesByBytes() throws {
        let counter = try WordCounter()
        try counter.feed(Array("b a c b a c d".utf8))
        try counter.finish()
        #expect(counter.sorted(limit: 2).map(\.string) == ["a", "b"])
        #expect(counter.sorted().map(\.count) == [2, 2, 2, 1])
    }

    @Test func rendersTextTSVAndJSON() throws {
        let counter = try WordCounter()
        try counter.feed([0x61, 0x22, 0x20, 0x62, 0x20, 0x61, 0x22, 0x20, 0xFF, 0x0A])
        try counter.finish()
        #expect(String(decoding: try counter.rendered(format: .text), as: UTF8.self) == "a\" 2\nb 1\n\u{FFFD} 1\n")
        #expect(String(decoding: try counter.rendered(format: .tsv), as: UTF8.self) == "a\"\t2\nb\t1\n\u{FFFD}\t1\n")
        #expect(
            String(decoding: try counter.rendered(format: .json), as: UTF8.self)
                == "[\n{\"word\":\"a\\\"\",\"count\":2},\n{\"word\":\"b\",\"count\":1},\n{\"word\":\"\u{FFFD}\",\"count\":1,\"hex\":\"ff\"}\n]\n"
        )
        #expect(try WordCounter().rendered(format: .json) == Array("[]\n".utf8))
        #expect(try WordCounter().rendered(format: .text).isEmpty)
    }

    @Test func partitionedTablesMergeInParallelAllOrNothing() throws {
        var random = RandomText(state: 99)
        let a = random.bytes(400_000)
        let b = random.bytes(300_000)
        let source = try WordCounter()
        try source.feed(a)
        try source.finish()
        let table = try source.serializedPartitioned()
        let parallel = try WordCounter()
        try parallel.feed(b)
        try parallel.finish()
        try parallel.mergeInParallel(serialized: table, threads: 4, parallelAbove: 0)
        #expect(try parallel.rendered(format: .text) == Reference.text(a + [0x0A] + b, lowercase: false))

        // A flipped byte deep in a section: refused, and nothing of the table is added.
        var corrupt = table
        corrupt[corrupt.count - 3] ^= 0x80
        let untouched = try WordCounter()
        try untouched.feed(b)
        try untouched.finish()
        #expect(throws: ElasticFlowError.self) {
            try untouched.mergeInParallel(serialized: corrupt, threads: 4, parallelAbove: 0)
        }
        #expect(try untouched.rendered(format: .text) == Reference.text(b, lowercase: false))
    }

    @Test func mergesRefuseOverflowInsteadOfSaturatingAndChangeNothing() throws {
        let big = try WordCounter()
        try big.add(Array("w".utf8), count: UInt64.max - 1)
        let more = try WordCounter()
        try more.add(Array("w".utf8), count: 1)
        try more.add(Array("v".utf8), count: 1)
        #expect(throws: ElasticFlowError.core(.overflow, operation: "merging word counts")) { try big.merge(more) }
        #expect(throws: ElasticFlowError.self) { try big.merge(serialized: try more.serialized()) }
        for threads in [1, 4] {
            let error = #expect(throws: ElasticFlowError.self) {
                try big.mergeInParallel(
                    serialized: try more.serializedPartitioned(), threads: threads, parallelAbove: 0)
            }
            #expect(
                error?.description.contains("a count would overflow 64 bits") == true, "\(String(describing: error))")
        }
        #expect(big.count(of: "w") == UInt64.max - 1 && big.count(of: "v") == 0 && big.total == UInt64.max - 1)
        #expect(throws: ElasticFlowError.self) { try big.add(Array("x".utf8), count: 2) }
        #expect(throws: ElasticFlowError.self) { try big.feed(Array("a b\n".utf8)) }
        // One more fits exactly.
        try big.add(Array("x".utf8), count: 1)
        #expect(big.total == UInt64.max)
    }

    @Test func boundsReadATableWithoutMergingIt() throws {
        let counter = try WordCounter()
        try counter.feed(Array("aa bbbb aa c\n".utf8))
        try counter.finish()
        for table in [try counter.serialized(), try counter.serializedPartitioned()] {
            let bounds = try table.withUnsafeBytes { try WordCounter.bounds(ofSerialized: $0) }
            #expect(bounds == .init(total: 4, entries: 3, longest: 4))
            #expect(throws: ElasticFlowError.self) {
                try Array(table.dropLast()).withUnsafeBytes { try WordCounter.bounds(ofSerialized: $0) }
            }
        }
    }
}

import Testing

@testable import ElasticFlow

@Suite struct LocalWordCountTests {
    @Test(arguments: [(1, 1 << 20), (2, 8192), (4, 1000), (3, 64)])
    func equalsTheReferenceForAnyThreadsAndParcelSize(threads: Int, parcelSize: Int) throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 33)
        var random = RandomText(state: 34)
        let first = generator.generate(byteCount: 300_000)
        let second = random.bytes(40_000)
        let paths = [try directory.file("1", first), try directory.file("2", second)]
        for lowercase in [false, true] {
            let options = WordCountOptions(lowercase: lowercase, threads: threads, parcelSize: parcelSize)
            let (counter, statistics) = try LocalWordCount.run(paths.map { .file($0) }, options: options)
            #expect(statistics.bytes == UInt64(first.count + second.count))
            // Concatenating the files would join their edge words; count them as separate streams.
            let expected = Reference.text(first + [0x0A] + second, lowercase: lowercase)
            #expect(try counter.rendered(format: .text) == expected)
        }
    }

    @Test func anEmptySourceGivesAnEmptyCount() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("empty", [])
        let (counter, statistics) = try LocalWordCount.run([.file(path)])
        #expect(counter.distinct == 0 && statistics.parcels == 0)
    }
}

import Testing

@testable import ElasticFlow

@Suite struct ParcelCutterTests {
    /// Cuts every source and returns the parcels' bytes and origins.
    func cut(_ sources: [DataSource], parcelSize: Int) throws -> [([UInt8], ParcelOrigin)] {
        let cutter = try ParcelCutter(sources: sources, parcelSize: parcelSize)
        let buffer = ParcelBuffer(capacity: parcelSize)
        var parcels: [([UInt8], ParcelOrigin)] = []
        while let origin = try cutter.next(into: buffer) {
            parcels.append((Array(buffer.bytes), origin))
        }
        return parcels
    }

    @Test func parcelsEndAtLineBoundariesAndCoverEveryByteOnce() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 21)
        let text = generator.generate(byteCount: 200_000)
        let path = try directory.file("a.txt", text)
        let parcels = try cut([.file(path)], parcelSize: 10_000)
        #expect(parcels.count > 15)
        #expect(parcels.flatMap(\.0) == text)
        var offset: UInt64 = 0
        for (bytes, origin) in parcels {
            #expect(bytes.last == 0x0A)
            #expect(bytes.count <= 10_000)
            #expect(origin.offset == offset && origin.length == bytes.count && origin.source == 0)
            offset += UInt64(bytes.count)
        }
    }

    @Test func aWordLongerThanAParcelStaysWhole() throws {
        let directory = try TemporaryDirectory()
        let long = [UInt8](repeating: UInt8(ascii: "x"), count: 50_000)
        let text = Array("short words\n".utf8) + long + Array(" tail\nend".utf8)
        let path = try directory.file("long.txt", text)
        let parcels = try cut([.file(path)], parcelSize: 4096)
        #expect(parcels.flatMap(\.0) == text)
        #expect(parcels.contains { $0.0.contains(long) || $0.0.firstRange(of: long) != nil })
        let counter = try WordCounter()
        for (bytes, _) in parcels {
            try counter.feed(bytes)
            try counter.finish()
        }
        #expect(counter.count(of: long) == 1)
        #expect(counter.count(of: "end") == 1)
    }

    @Test func filesNeverJoinAWordAcrossTheirBoundary() throws {
        let directory = try TemporaryDirectory()
        let a = try directory.file("a", Array("one two".utf8))  // no trailing newline
        let empty = try directory.file("empty", [])
        let b = try directory.file("b", Array("three\n".utf8))
        let parcels = try cut([.file(a), .file(empty), .file(b)], parcelSize: 3)
        #expect(parcels.map { String(decoding: $0.0, as: UTF8.self) } == ["one ", "two", "three\n"])
        #expect(parcels.map(\.1.source) == [0, 0, 2])
    }

    @Test func badPathsFailBeforeAnyWork() throws {
        let directory = try TemporaryDirectory()
        let good = try directory.file("good", Array("x\n".utf8))
        #expect(throws: ElasticFlowError.isDirectory(path: directory.url.path)) {
            try ParcelCutter(sources: [.file(good), .file(directory.url.path)], parcelSize: 10)
        }
        #expect(throws: ElasticFlowError.io(path: directory.path("missing"), operation: "open", errno: 2)) {
            try ParcelCutter(sources: [.file(directory.path("missing"))], parcelSize: 10)
        }
    }
}

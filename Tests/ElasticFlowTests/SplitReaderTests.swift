import Testing

@testable import ElasticFlow

/// The boundary rule of shared-input mode: whatever the split size, the owned ranges of a file's
/// splits tile it exactly, each starts at a line start, none splits a line, and counting them
/// gives the naive reference's counts.
@Suite struct SplitReaderTests {
    /// Splits a file and reads every split's owned bytes.
    func owned(_ path: String, splitSize: Int) throws -> [(ByteRange, [UInt8], ProcessedRange)] {
        let splitter = try ByteRangeSplitter(sources: [.file(path)], splitSize: splitSize)
        let reader = SplitReader(paths: splitter.paths)
        let buffer = ParcelBuffer(capacity: 16)
        var out: [(ByteRange, [UInt8], ProcessedRange)] = []
        while let range = splitter.next() {
            let (bytes, processed) = try reader.read(
                range, expectedSize: splitter.fingerprints[range.source].size, into: buffer)
            out.append((range, Array(buffer.bytes[bytes]), processed))
        }
        return out
    }

    func check(_ text: [UInt8], splitSizes: some Sequence<Int>) throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("input", text)
        let reference = Reference.counts(text, lowercase: false)
        for size in splitSizes {
            let splits = try owned(path, splitSize: size)
            let joined = splits.flatMap(\.1)
            #expect(joined == text, "split size \(size): owned ranges do not tile the file")
            var next: UInt64 = 0
            for (range, bytes, processed) in splits where !bytes.isEmpty {
                #expect(processed.start == next, "split size \(size): gap or overlap at \(next)")
                #expect(processed.start >= range.offset && processed.start < range.offset + range.length)
                #expect(processed.start == 0 || text[Int(processed.start) - 1] == 0x0A)
                #expect(processed.length == UInt64(bytes.count))
                #expect(bytes.withUnsafeBytes { crc32c($0) } == processed.checksum)
                #expect(bytes.withUnsafeBytes { lineCount($0) } == processed.lines)
                next = processed.start + processed.length
            }
            let counter = try WordCounter()
            for (_, bytes, _) in splits {
                try counter.feed(bytes)
                try counter.finish()
            }
            let counted = counter.sorted().map { ($0.word, $0.count) }
            #expect(counted.elementsEqual(reference) { $0.0 == $1.0 && $0.1 == $1.1 }, "split size \(size)")
        }
    }

    @Test func aCutOnEveryByteOfASmallFile() throws {
        let text = Array("one two\r\nthree\n\nfour  five\tsix\nseven".utf8)
        try check(text, splitSizes: 1...(text.count + 2))
    }

    @Test func crlfNoFinalNewlineAndBlankLines() throws {
        try check(Array("a\r\nb\r\n\r\n\r\nc d\r\n e".utf8), splitSizes: 1...12)
        try check(Array("\n\n\n\n".utf8), splitSizes: 1...5)
        try check(Array("no newline at all here".utf8), splitSizes: [1, 2, 3, 7, 100])
        try check(Array("x".utf8), splitSizes: [1, 2])
    }

    @Test func aLineLongerThanSeveralSplitsAndTheLookahead() throws {
        let long = [UInt8](repeating: UInt8(ascii: "w"), count: 200_000)
        var text = Array("first line\n".utf8) + long + Array(" tail of the long line\nlast\n".utf8)
        text += long + long  // a final line with no newline, longer than the look-ahead
        try check(text, splitSizes: [1000, 4096, 65_536, 70_001, 150_000, 1 << 20])
    }

    @Test func randomTextAtManySplitSizes() throws {
        var random = RandomText(state: 7)
        let text = random.bytes(30_000)
        try check(text, splitSizes: [1, 2, 3, 5, 8, 13, 64, 100, 1000, 4097, 29_999, 30_000, 40_000])
    }

    @Test func anEmptyFileHasNoSplitsAndStandardInputIsRefused() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("empty", [])
        let splitter = try ByteRangeSplitter(sources: [.file(path)], splitSize: 10)
        #expect(splitter.next() == nil)
        #expect(throws: ElasticFlowError.self) { try ByteRangeSplitter(sources: [.standardInput], splitSize: 10) }
        #expect(throws: ElasticFlowError.self) {
            try ByteRangeSplitter(sources: [.file(directory.path("missing"))], splitSize: 10)
        }
    }

    @Test func aFileOfAnotherSizeIsRefusedWithItsName() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("input", Array("a b c\nd e f\n".utf8))
        let reader = SplitReader(paths: [path])
        let buffer = ParcelBuffer(capacity: 16)
        #expect {
            try reader.read(ByteRange(source: 0, offset: 0, length: 6), expectedSize: 99, into: buffer)
        } throws: { error in
            "\(error)".contains(path) && "\(error)".contains("99")
        }
    }

    @Test func theSplitterNoticesAChangedFile() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("input", Array("a b c\n".utf8))
        let splitter = try ByteRangeSplitter(sources: [.file(path)], splitSize: 2)
        #expect(splitter.changedSource() == nil)
        _ = try directory.file("input", Array("a b c d\n".utf8))
        #expect(splitter.changedSource()?.contains(path) == true)
    }
}

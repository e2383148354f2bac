import Foundation
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

/// `nextRange` (copy mode from files: a parcel inside a file cut without reading it) makes the
/// very cuts `next(into:)` makes, whatever the lines, so a step's receipts do not depend on the
/// way it was cut, and what it skips is never read by the reading path after it.
@Suite struct UnreadCutTests {
    /// Every parcel of `sources`, cut unread where it can be, else read; the bytes of an unread
    /// one are taken from the text afterwards. Also how many were cut unread.
    func cutUnread(_ sources: [String], parcelSize: Int) throws -> (parcels: [([UInt8], ParcelOrigin)], unread: Int) {
        let cutter = try ParcelCutter(sources: sources.map { .file($0) }, parcelSize: parcelSize)
        let buffer = ParcelBuffer(capacity: parcelSize)
        let texts = try sources.map { try [UInt8](Data(contentsOf: URL(fileURLWithPath: $0))) }
        var parcels: [([UInt8], ParcelOrigin)] = []
        var unread = 0
        while true {
            if let origin = try cutter.nextRange() {
                let start = Int(origin.offset)
                parcels.append((Array(texts[origin.source][start..<start + origin.length]), origin))
                unread += 1
            } else if let origin = try cutter.next(into: buffer) {
                parcels.append((Array(buffer.bytes), origin))
            } else {
                break
            }
        }
        return (parcels, unread)
    }

    func read(_ sources: [String], parcelSize: Int) throws -> [([UInt8], ParcelOrigin)] {
        let cutter = try ParcelCutter(sources: sources.map { .file($0) }, parcelSize: parcelSize)
        let buffer = ParcelBuffer(capacity: parcelSize)
        var parcels: [([UInt8], ParcelOrigin)] = []
        while let origin = try cutter.next(into: buffer) { parcels.append((Array(buffer.bytes), origin)) }
        return parcels
    }

    @Test func unreadCutsAreTheCutsOfReadingOnEveryKindOfLine() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 77)
        let window = ParcelCutter.tailWindow
        let long = [UInt8](repeating: UInt8(ascii: "l"), count: window + 5000)  // a line past the window
        let word = [UInt8](repeating: UInt8(ascii: "w"), count: 3 * window)  // no whitespace at all
        let texts: [(String, [UInt8])] = [
            ("corpus.txt", generator.generate(byteCount: 100_000)),
            ("crlf.txt", Array(String(repeating: "one two\r\nthree\r\n", count: 3000).utf8)),
            ("long-lines.txt", Array("a b\n".utf8) + long + Array(" c\nd e\n".utf8) + long + long + Array("\nf".utf8)),
            ("no-newline.txt", Array(String(repeating: "x y z ", count: 40_000).utf8)),
            ("one-word.txt", Array("start\n".utf8) + word + Array("\nend\n".utf8)),
            ("newlines.txt", [UInt8](repeating: 0x0A, count: 10_000)),
            ("empty.txt", []),
            ("small.txt", Array("last words".utf8)),
        ]
        let paths = try texts.map { try directory.file($0.0, $0.1) }
        var unreadInAll = 0
        for size in [1, 2, 3, 7, 100, 4096, window - 1, window, window + 1, 200_000] {
            for path in paths {
                let (unread, count) = try cutUnread([path], parcelSize: size)
                let reading = try read([path], parcelSize: size)
                #expect(unread.map(\.1) == reading.map(\.1), "\(path) at \(size)")
                #expect(unread.map(\.0) == reading.map(\.0), "\(path) at \(size)")
                unreadInAll += count
            }
            // Several files in one step (the small ones packed after a file's last parcel).
            let (unread, _) = try cutUnread(paths, parcelSize: size)
            let reading = try read(paths, parcelSize: size)
            #expect(unread.map(\.1) == reading.map(\.1), "all files at \(size)")
            #expect(Bytes(unread.flatMap(\.0)) == Bytes(reading.flatMap(\.0)), "all files at \(size)")
        }
        #expect(unreadInAll > 1000, "most parcels inside a file were cut unread")
    }
}

import Foundation
import Testing

@testable import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// The single-node count's small files: checked once (one descriptor each, within a budget), then
/// packed into groups that every thread reads at once. Counts are compared byte for byte with the
/// reference over each file followed by a newline (`ManyFilesTests.reference`).
@Suite struct PackedFilesTests {
    /// The check keeps at most `budget` regular files open; past it they are opened when read,
    /// and the count is the same whatever the budget.
    @Test func filesPastTheDescriptorBudgetAreOpenedWhenRead() throws {
        let directory = try TemporaryDirectory()
        let (_, paths) = try ManyFilesTests.corpus(in: directory, files: 60)
        let expected = try ManyFilesTests.reference(paths)
        for budget in [0, 3, 1000] {
            let checked = try CheckedSources(paths.map(DataSource.file), readingFormats: true, budget: budget)
            let kept = (0..<checked.count).filter { checked.entry($0).fd >= 0 }
            #expect(kept == Array(0..<min(budget, paths.count)), "budget \(budget)")
            #expect((0..<checked.count).allSatisfy { checked.entry($0).isRegular })
            let (packed, rest) = PackedFiles.split(checked, parcelSize: 8192, decompression: .auto)
            #expect(packed.groups.count > 1 && rest.count == 1, "only big.txt is left to the cutter")
            let counter = try WordCounter(partitions: 4)
            packed.drain(into: counter, parcelSize: 8192)
            #expect(packed.firstError == nil)
            let cutter = try ParcelCutter(checked: rest, parcelSize: 8192)
            let buffer = ParcelBuffer(capacity: 8192)
            while try cutter.next(into: buffer) != nil {
                try counter.feed(buffer.bytes)
                try counter.finish()
            }
            let same = try counter.rendered(format: .text) == expected
            #expect(same, "budget \(budget)")
        }
    }

    /// A compressed small file among plain ones is recognised by its first bytes and counted as
    /// its text, even one that expands to many parcels (read in parcels, never whole).
    @Test func compressedSmallFilesAreCountedAsTheirText() throws {
        let directory = try TemporaryDirectory()
        // About 80 KB of gzip that expands to 3 MB: packed with parcels of 1 MiB and read in parcels.
        var text = CompressedInputTests.text(seed: 7, bytes: 200_000)
        for _ in 0..<200_000 { text += Array("spam eggs ham\n".utf8) }
        var paths = [try directory.file("a.txt", Array("alpha beta\n".utf8))]
        paths.append(try directory.file("b.gz", try CompressedInputTests.compress(text, with: "gzip")))
        paths.append(try directory.file("c.txt", Array("gamma".utf8)))
        paths.append(
            try directory.file("d.zst", try CompressedInputTests.compress(Array("delta\n".utf8), with: "zstd")))
        let expected = Reference.text(
            Array("alpha beta\n".utf8) + text + Array("\ngamma\ndelta\n".utf8), lowercase: false)
        for (parcelSize, threads) in [(64 << 10, 2), (1 << 20, 1), (4 << 20, 3)] {
            var options = WordCountOptions(threads: threads, parcelSize: parcelSize)
            options.partitions = 4
            let (counter, statistics) = try LocalWordCount.run(paths.map(DataSource.file), options: options)
            let same = try counter.rendered(format: .text) == expected
            #expect(same, "parcels of \(parcelSize)")
            #expect(statistics.bytes >= UInt64(text.count), "the text is counted, not the compressed bytes")
        }
    }

    /// A word over the cap in a small file is an error naming where it is; one under it counts.
    @Test func aWordOverTheCapInASmallFileIsAnErrorNamingIt() throws {
        let directory = try TemporaryDirectory()
        let a = try directory.file("a.txt", Array("short words here\n".utf8))
        let long = try directory.file("long.txt", Array("x y ".utf8) + [UInt8](repeating: 0x7A, count: 3000))
        var options = WordCountOptions(threads: 2, parcelSize: 1 << 20)
        options.maxWordSize = 1000
        #expect {
            _ = try LocalWordCount.run([.file(a), .file(long)], options: options)
        } throws: { error in
            "\(error)".contains("longer than the word-size cap") && "\(error)".contains(a)
        }
        // Longer than the buffer of a small parcel, in a file over half a parcel: the cutter's.
        options.parcelSize = 1024
        options.maxWordSize = 2048
        #expect {
            _ = try LocalWordCount.run([.file(a), .file(long)], options: options)
        } throws: { error in
            "\(error)".contains("longer than the word-size cap") && "\(error)".contains(long)
        }
        options.maxWordSize = 4096
        let (counter, _) = try LocalWordCount.run([.file(a), .file(long)], options: options)
        #expect(counter.count(of: [UInt8](repeating: 0x7A, count: 3000)) == 1)
        #expect(counter.count(of: Array("words".utf8)) == 1)
    }

    /// A file that grew after the check is read to its end, in parcels cut at whitespace.
    @Test func aFileThatGrewAfterTheCheckIsReadWhole() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("grows.txt", Array("one two\n".utf8))
        let checked = try CheckedSources([.file(path)], readingFormats: false)
        var more: [UInt8] = []
        for index in 0..<2000 { more += Array("w\(index % 50) ".utf8) }
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(more))
        try handle.close()
        let (packed, rest) = PackedFiles.split(checked, parcelSize: 64, decompression: .none)
        #expect(packed.groups.count == 1 && rest.count == 0)
        let counter = try WordCounter(partitions: 2)
        packed.drain(into: counter, parcelSize: 64)
        #expect(packed.firstError == nil)
        let same =
            try counter.rendered(format: .text) == Reference.text(Array("one two\n".utf8) + more, lowercase: false)
        #expect(same)
    }
}

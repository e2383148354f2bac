import Foundation
import Testing

@testable import ElasticFlow

/// zstd's seekable format: `elasticflow compress --seekable` writes it (the Debian `zstd` tool
/// must read it back), and a seekable file is split by its frames — on every thread of one node,
/// and across workers in shared-input mode — with the plain file's counts byte for byte, however
/// the frames cut the text (mid-word, mid-CRLF, one byte per frame).
@Suite struct SeekableInputTests {
    /// Text with CRLF line ends, tabs, runs of spaces, a long word, and no newline at the end.
    static func text(seed: UInt64, bytes: Int) -> [UInt8] {
        var generator = CorpusGenerator(seed: seed)
        var text: [UInt8] = []
        for (index, line) in generator.generate(byteCount: bytes).split(separator: 0x0A).enumerated() {
            text += line
            text += index % 3 == 0 ? Array("\r\n".utf8) : index % 3 == 1 ? Array(" \t\n".utf8) : [0x0A]
            if index == 7 { text += [UInt8](repeating: UInt8(ascii: "x"), count: 5000) + [0x0A] }
        }
        return text + Array("the last line has no newline".utf8)
    }

    /// `elasticflow compress --seekable` of `path` into `output`.
    static func compress(_ path: String, to output: String, frameSize: String, extra: [String] = []) throws {
        let result = try CommandRunner.run(
            ["compress", "--seekable", "--frame-size", frameSize, "-o", output] + extra + [path])
        #expect(result.status == 0, "compress \(frameSize): \(result.stderr)")
    }

    /// `zstd -dc` of a file (the Debian tool).
    static func zstdDecompress(_ path: String) throws -> CommandResult {
        try CommandRunner.run(
            ["-dc", "-q", path], environment: ["PATH": "/usr/bin:/bin"], executable: "/usr/bin/zstd")
    }

    @Test func compressWritesWhatZstdDecompresses() throws {
        let directory = try TemporaryDirectory()
        let text = Self.text(seed: 91, bytes: 300_000)
        let plain = try directory.file("plain.txt", text)
        for frameSize in ["1", "7", "1000", "64KiB", "1MiB"] {
            let small = frameSize == "1" || frameSize == "7"
            let input = small ? try directory.file("small-\(frameSize).txt", Array(text[..<3000])) : plain
            let output = directory.path("out-\(frameSize).zst")
            try Self.compress(input, to: output, frameSize: frameSize)
            let back = try Self.zstdDecompress(output)
            #expect(back.status == 0, "\(frameSize): \(back.stderr)")
            #expect(
                Bytes(back.stdout) == Bytes((small ? Array(text[..<3000]) : text)), "zstd -dc of frames of \(frameSize)"
            )
            // Frames of exactly the frame size, the seek table after them.
            let fd = open(output, O_RDONLY)
            defer { close(fd) }
            var info = stat()
            fstat(fd, &info)
            let table = try #require(try SeekTable.load(fd: fd, size: UInt64(info.st_size), name: output))
            let size = small ? Int(frameSize)! : try ByteSize.parse(frameSize)
            #expect(table.frames.count == ((small ? 3000 : text.count) + size - 1) / size)
            #expect(table.checksums)
        }
        // Standard input, and a compressed input (decompressed first unless --decompress none).
        let gzipped = try CompressedInputTests.compress(text, with: "gzip")
        let fromStdin = try CommandRunner.run(["compress", "--seekable", "--frame-size", "10KiB"], stdin: gzipped)
        #expect(fromStdin.status == 0, "\(fromStdin.stderr)")
        let piped = try directory.file("stdin.zst", fromStdin.stdout)
        #expect(Bytes(try Self.zstdDecompress(piped).stdout) == Bytes(text))
        let raw = try directory.file("text.gz", gzipped)
        try Self.compress(raw, to: directory.path("raw.zst"), frameSize: "10KiB", extra: ["--decompress", "none"])
        #expect(Bytes(try Self.zstdDecompress(directory.path("raw.zst")).stdout) == Bytes(gzipped))
        // An empty input: a seek table of no frames, an empty text.
        try Self.compress(try directory.file("empty.txt", []), to: directory.path("empty.zst"), frameSize: "1KiB")
        #expect(try Self.zstdDecompress(directory.path("empty.zst")).stdout.isEmpty)
        #expect(try CommandRunner.run(["count", directory.path("empty.zst")]).stdout.isEmpty)
        // Bad settings: one line, no output file.
        for bad in [["--frame-size", "0"], ["--frame-size", "1GiB"], ["--level", "20"], ["--decompress", "x"], []] {
            let seekable = bad.isEmpty ? [] : ["--seekable"]
            let result = try CommandRunner.run(
                ["compress"] + seekable + bad + ["-o", directory.path("bad.zst"), plain])
            #expect(result.status != 0 && result.stderr.split(separator: "\n").count == 1, "\(bad): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: directory.path("bad.zst")))
        }
    }

    @Test func framesCutAnywhereCountLikeThePlainFileOnOneNode() throws {
        let directory = try TemporaryDirectory()
        let text = Self.text(seed: 92, bytes: 1_000_000)
        let expected = Reference.text(text, lowercase: false)
        let plain = try directory.file("plain.txt", text)
        #expect(Bytes(try CommandRunner.run(["count", plain]).stdout) == Bytes(expected))
        for frameSize in ["333", "4KiB", "100000"] {
            let path = directory.path("f\(frameSize).zst")
            try Self.compress(plain, to: path, frameSize: frameSize)
            for parcel in ["1KiB", "5KiB", "64KiB", "4MiB"] {
                for threads in ["1", "2", "3"] {
                    let result = try CommandRunner.run(["count", "--threads", threads, "--parcel-size", parcel, path])
                    #expect(result.status == 0, "\(result.stderr)")
                    #expect(
                        result.stdout == expected, "frames of \(frameSize), parcels of \(parcel), \(threads) threads")
                }
            }
            let lower = try CommandRunner.run(["count", "--lowercase", path])
            #expect(Bytes(lower.stdout) == Bytes(Reference.text(text, lowercase: true)), "--lowercase")
        }
        // One byte per frame: every cut there is, mid-word and between CR and LF.
        let short = Array(text[..<4000])
        let tiny = try directory.file("tiny.txt", short)
        try Self.compress(tiny, to: directory.path("tiny.zst"), frameSize: "1")
        for parcel in ["1", "10", "1KiB"] {
            let result = try CommandRunner.run(["count", "--parcel-size", parcel, directory.path("tiny.zst")])
            #expect(
                Bytes(result.stdout) == Bytes(Reference.text(short, lowercase: false)),
                "1-byte frames, parcels of \(parcel)")
        }
        // The file really is split by frames, not streamed.
        let checked = try CheckedSources([.file(directory.path("f4KiB.zst")), .file(plain)], readingFormats: true)
        let (seekable, rest) = try SeekableParcels.split(checked, parcelSize: 64 << 10)
        #expect(seekable.parcels.count == (text.count + (64 << 10) - 1) / (64 << 10))
        #expect(rest.sources == [.file(plain)])
    }

    /// The ownership rule itself: for every frame size and run size, the owned ranges of the runs
    /// tile the text, and each starts at 0 or just after a boundary byte.
    @Test func ownedRangesTileTheTextForEveryCut() throws {
        let directory = try TemporaryDirectory()
        let text = Array("ab\r\ncd  e\tfgh\n\nijklmnop q\r\n\r\nrs t".utf8)
        let plain = try directory.file("t.txt", text)
        let reader = try SeekableReader()
        let buffer = ParcelBuffer(capacity: 16)
        for frameSize in 1...9 {
            let path = directory.path("t\(frameSize).zst")
            try Self.compress(plain, to: path, frameSize: "\(frameSize)")
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            var info = stat()
            fstat(fd, &info)
            let table = try #require(try SeekTable.load(fd: fd, size: UInt64(info.st_size), name: path))
            for target in 1...12 {
                for boundary in [RecordBoundary.lines, .whitespace] {
                    var next: UInt64 = 0
                    for run in table.runs(targetSize: target) {
                        let (owned, start) = try reader.read(
                            run, of: table, fd: fd, name: path, boundary: boundary, lookPastCap: 1 << 20, into: buffer)
                        #expect(start == next, "frames of \(frameSize), runs of \(target), \(boundary)")
                        #expect(Array(buffer.bytes[owned]) == Array(text[Int(start)..<Int(start) + owned.count]))
                        if start > 0 && !owned.isEmpty { #expect(boundary.isBoundary(text[Int(start) - 1])) }
                        next = start + UInt64(owned.count)
                    }
                    #expect(next == UInt64(text.count), "frames of \(frameSize), runs of \(target), \(boundary)")
                }
            }
        }
    }

    @Test func clusterCopyModeAndSharedInputGiveTheSingleNodeCount() throws {
        let directory = try TemporaryDirectory()
        let text = Self.text(seed: 93, bytes: 600_000)
        let expected = Reference.text(text, lowercase: false)
        let plain = try directory.file("plain.txt", text)
        let workers = [try TestWorker(cookie: "k"), try TestWorker(cookie: "k")]
        let cluster = workers.map(\.address).joined(separator: ",")
        for frameSize in ["777", "64KiB"] {
            let path = directory.path("c\(frameSize).zst")
            try Self.compress(plain, to: path, frameSize: frameSize)
            for mode in [[], ["--shared-input"], ["--shared-input", "--no-master-work"]] {
                for parcel in ["4KiB", "100KiB"] {
                    let result = try CommandRunner.run(
                        ["count", "--workers", cluster, "--parcel-size", parcel] + mode + [path],
                        environment: ["ELASTICFLOW_COOKIE": "k"], timeout: 120)
                    #expect(result.status == 0, "\(mode) \(frameSize) \(parcel): \(result.stderr)")
                    #expect(
                        Bytes(result.stdout) == Bytes(expected), "\(mode), frames of \(frameSize), parcels of \(parcel)"
                    )
                }
            }
        }
        // Line tasks in shared-input mode see whole lines: the plain file's results.
        let config = try directory.file("cluster.json", Array(#"{"nodes": []}"#.utf8))
        for task in ["line-lengths", "longest-line"] {
            var outputs: [[UInt8]] = []
            for path in [plain, directory.path("c777.zst")] {
                let result = try CommandRunner.run(
                    [
                        "run", "--config", config, "--workers", cluster, "--cookie", "k", "--task", task,
                        "--shared-input", "--parcel-size", "3KiB", "--no-master-work", path,
                    ], timeout: 120)
                #expect(result.status == 0, "\(task): \(result.stderr)")
                outputs.append(result.stdout)
            }
            #expect(outputs[0] == outputs[1], "\(task) over the seekable file")
        }
        // With --decompress none a seekable file is split by bytes, and counted as its bytes.
        let raw = try CommandRunner.run(
            ["count", "--workers", cluster, "--shared-input", "--decompress", "none", directory.path("c777.zst")],
            environment: ["ELASTICFLOW_COOKIE": "k"], timeout: 120)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory.path("c777.zst"))))
        #expect(raw.status == 0 && Bytes(raw.stdout) == Bytes(Reference.text(bytes, lowercase: false)), "\(raw.stderr)")
        // A zstd file without a seek table is still refused in shared-input mode.
        let stream = try directory.file("stream.zst", try CompressedInputTests.compress(text, with: "zstd"))
        let refused = try CommandRunner.run(
            ["count", "--workers", cluster, "--shared-input", stream], environment: ["ELASTICFLOW_COOKIE": "k"],
            timeout: 60)
        #expect(refused.status != 0 && refused.stderr.contains("zstd-compressed"), "\(refused.stderr)")
    }

    /// One line naming the file and a compressed offset, a non-zero exit, nothing on stdout.
    static func expectOneLineError(_ result: CommandResult, _ path: String, _ words: [String], _ what: String) {
        #expect(result.status != 0, "\(what)")
        #expect(result.stdout.isEmpty, "\(what): nothing printed as a result")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(what): \(result.stderr)")
        #expect(result.stderr.contains(path), "\(what): \(result.stderr)")
        for word in words { #expect(result.stderr.contains(word), "\(what): \(result.stderr)") }
    }

    @Test func damagedTablesAndFramesAreOneLineNamingTheFileAndOffset() throws {
        let directory = try TemporaryDirectory()
        let text = Self.text(seed: 94, bytes: 200_000)
        let plain = try directory.file("plain.txt", text)
        let good = directory.path("good.zst")
        try Self.compress(plain, to: good, frameSize: "10KiB")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: good)))
        let fd = open(good, O_RDONLY)
        let table = try #require(try SeekTable.load(fd: fd, size: UInt64(bytes.count), name: good))
        close(fd)
        let tableAt = Int(table.tableOffset)
        var files: [(String, [String])] = []
        // A table missing an entry (its footer kept): the table is not where the footer says.
        var truncated = bytes
        truncated.removeSubrange((tableAt + 8 + 12)..<(tableAt + 8 + 24))
        files.append((try directory.file("short-table.zst", truncated), ["seek table", "compressed byte"]))
        // A footer whose frame count lies.
        var count = bytes
        count[bytes.count - 9] &+= 1
        files.append((try directory.file("count.zst", count), ["seek table", "compressed byte"]))
        // A compressed size that lies (the frames no longer tile the file).
        var size = bytes
        size[tableAt + 8 + 12] &+= 1
        files.append((try directory.file("size.zst", size), ["seek table", "compressed byte"]))
        // A decompressed size that lies, and a checksum that lies: found when that frame is read.
        var text3 = bytes
        text3[tableAt + 8 + 3 * 12 + 4] &+= 1
        files.append(
            (
                try directory.file("text-size.zst", text3),
                ["frame 3 at compressed bytes \(table.frames[3].compressed_offset)..<"]
            ))
        var sum = bytes
        sum[tableAt + 8 + 5 * 12 + 8] ^= 0x40
        files.append(
            (
                try directory.file("sum.zst", sum),
                ["checksum", "frame 5 at compressed bytes \(table.frames[5].compressed_offset)..<"]
            ))
        // A corrupt frame.
        var frame = bytes
        let middle = Int(table.frames[7].compressed_offset) + Int(table.frames[7].compressed_size) / 2
        for i in middle..<(middle + 8) { frame[i] ^= 0x5a }
        let corrupt = try directory.file("frame.zst", frame)
        files.append((corrupt, ["compressed byte"]))
        for (path, words) in files {
            for parcel in ["1KiB", "4MiB"] {
                let result = try CommandRunner.run(["count", "--parcel-size", parcel, path], timeout: 60)
                Self.expectOneLineError(result, path, words, "\(path) on one node, parcels of \(parcel)")
                if path == corrupt {
                    // The frame, or (a run's look past its end reads into the next frame) an
                    // offset the damage is at or before.
                    let frame7 = table.frames[7]
                    let offset = result.stderr.split(separator: "at or before compressed byte ").dropFirst().first
                        .flatMap { UInt64($0.prefix { $0.isNumber }) }
                    let named = result.stderr.contains("frame 7 at compressed bytes \(frame7.compressed_offset)..<")
                    #expect(named || offset.map { $0 >= UInt64(middle) } == true, "\(result.stderr)")
                }
            }
        }
        // Shared input: the master reads the table (one line before any work); a bad frame fails
        // the step on whichever node reads it, naming the file and the frame.
        let worker = try TestWorker(cookie: "d")
        for (path, words) in files {
            let result = try CommandRunner.run(
                ["count", "--workers", worker.address, "--shared-input", "--parcel-size", "16KiB", path],
                environment: ["ELASTICFLOW_COOKIE": "d"], timeout: 120)
            #expect(result.status != 0 && result.stdout.isEmpty, "\(path) shared")
            #expect(result.stderr.contains(path) && words.allSatisfy { result.stderr.contains($0) }, "\(result.stderr)")
        }
        // Truncated at the end: no seekable footer any more, read as a zstd stream that ends early.
        let cut = try directory.file("cut.zst", Array(bytes[..<(tableAt / 2)]))
        Self.expectOneLineError(try CommandRunner.run(["count", cut]), cut, ["truncated"], "truncated file")
    }

    @Test func aFrameThatExpandsPastTheLimitIsRefused() throws {
        let directory = try TemporaryDirectory()
        // One honest frame of 130 MiB of spaces and words (a few KiB compressed), with a seek table
        // that says so: more than a parcel may hold.
        let path = directory.path("big.zst")
        let made = try CommandRunner.run(
            ["-c", "yes 'spam eggs' | head -c 136314880 | /usr/bin/zstd -q -c > \(path)"],
            environment: ["PATH": "/usr/bin:/bin"], executable: "/bin/sh")
        #expect(made.status == 0)
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let frameSize = UInt32(bytes.count)
        bytes += Self.table([(frameSize, 136_314_880)])
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let refused = try CommandRunner.run(["count", path])
        Self.expectOneLineError(refused, path, ["expands to 136314880 bytes", "limit"], "a 130 MiB frame")
        // A table that says less than the frame holds: refused when the frame is read.
        bytes.removeLast(8 + 8 + 9)
        bytes += Self.table([(frameSize, 4096)])
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let lying = try CommandRunner.run(["count", path])
        Self.expectOneLineError(
            lying, path, ["seek table", "frame 0 at compressed bytes 0..<"], "a frame larger than its entry")
    }

    /// A seek table without checksums for frames of (compressed, decompressed) sizes.
    static func table(_ frames: [(UInt32, UInt32)]) -> [UInt8] {
        var bytes: [UInt8] = []
        func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        u32(0x184D_2A5E)
        u32(UInt32(frames.count * 8 + 9))
        for (c, d) in frames {
            u32(c)
            u32(d)
        }
        u32(UInt32(frames.count))
        bytes.append(0)
        u32(0x8F92_EAB1)
        return bytes
    }

    @Test func aWordLongerThanTheCapAcrossFramesIsRefused() throws {
        let directory = try TemporaryDirectory()
        let text =
            Array("short words\n".utf8) + [UInt8](repeating: UInt8(ascii: "w"), count: 3 << 20) + Array(" end\n".utf8)
        let plain = try directory.file("long.txt", text)
        let path = directory.path("long.zst")
        try Self.compress(plain, to: path, frameSize: "64KiB")
        let refused = try CommandRunner.run(["count", "--max-word-size", "1MiB", "--parcel-size", "64KiB", path])
        Self.expectOneLineError(refused, path, ["word-size cap"], "a 3 MiB word")
        let counted = try CommandRunner.run(["count", "--max-word-size", "4MiB", "--parcel-size", "64KiB", path])
        #expect(Bytes(counted.stdout) == Bytes(Reference.text(text, lowercase: false)))
    }
}

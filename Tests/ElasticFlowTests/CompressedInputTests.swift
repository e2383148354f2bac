import Foundation
import Testing

@testable import ElasticFlow

/// Compressed input files (gzip, zstd, lz4, bzip2), made by the real Debian tools, counted as the
/// text they hold by real `elasticflow` processes, alone and with worker processes (copy mode).
@Suite struct CompressedInputTests {
    /// The command-line tools and their file suffixes.
    static let tools: [(tool: String, suffix: String)] = [
        ("gzip", "gz"), ("zstd", "zst"), ("lz4", "lz4"), ("bzip2", "bz2"),
    ]

    /// `tool -c` of `bytes` (the tool from /usr/bin; `make deps` installs it).
    static func compress(_ bytes: [UInt8], with tool: String, extra: [String] = []) throws -> [UInt8] {
        let result = try CommandRunner.run(
            ["-c", "-q"] + extra, stdin: bytes, environment: ["PATH": "/usr/bin:/bin"], executable: "/usr/bin/\(tool)")
        guard result.status == 0 else { throw TestWorkerError.exited }
        return result.stdout
    }

    static func text(seed: UInt64 = 81, bytes: Int = 1_500_000) -> [UInt8] {
        var generator = CorpusGenerator(seed: seed)
        return generator.generate(byteCount: bytes)
    }

    @Test func everyFormatCountsLikeThePlainFileOnOneNode() throws {
        let directory = try TemporaryDirectory()
        let text = Self.text()
        let expected = Reference.text(text, lowercase: false)
        for (tool, suffix) in Self.tools {
            let compressed = try Self.compress(text, with: tool)
            // The name says nothing: the magic bytes decide.
            let path = try directory.file("corpus-\(tool).data", compressed)
            for size in ["1KiB", "64KiB", "4MiB"] {
                let result = try CommandRunner.run(["count", "--parcel-size", size, path])
                #expect(result.status == 0, "\(tool) \(size): \(result.stderr)")
                #expect(Bytes(result.stdout) == Bytes(expected), "\(tool) \(size)")
            }
            // No FILE: standard input, decompressed too.
            let piped = try CommandRunner.run(["count"], stdin: compressed)
            #expect(piped.status == 0 && Bytes(piped.stdout) == Bytes(expected), "\(suffix) on standard input")
            // --decompress none: the raw bytes' count, as before.
            let raw = try CommandRunner.run(["count", "--decompress", "none", path])
            #expect(
                raw.status == 0 && Bytes(raw.stdout) == Bytes(Reference.text(compressed, lowercase: false)),
                "\(tool) none")
        }
    }

    @Test func everyFormatCountsLikeThePlainFileOnACluster() throws {
        let directory = try TemporaryDirectory()
        let text = Self.text(seed: 82)
        let plain = try directory.file("plain.txt", text)
        let workers = [try TestWorker(cookie: "z"), try TestWorker(cookie: "z")]
        let single = try CommandRunner.run(["count", plain])
        #expect(Bytes(single.stdout) == Bytes(Reference.text(text, lowercase: false)))
        for (tool, suffix) in Self.tools {
            let path = try directory.file("corpus.txt.\(suffix)", try Self.compress(text, with: tool))
            for wire in ["none", "lz4"] {
                let distributed = try CommandRunner.run(
                    [
                        "count", "--workers", workers.map(\.address).joined(separator: ","), "--compression", wire,
                        "--parcel-size", "64KiB", path,
                    ], environment: ["ELASTICFLOW_COOKIE": "z"])
                #expect(distributed.status == 0, "\(tool) \(wire): \(distributed.stderr)")
                #expect(Bytes(distributed.stdout) == Bytes(single.stdout), "\(tool) over the wire with \(wire)")
            }
        }
    }

    @Test func concatenatedMembersAndFramesAreOneText() throws {
        let directory = try TemporaryDirectory()
        let first = Self.text(seed: 83, bytes: 300_000)
        let second = Self.text(seed: 84, bytes: 200_000) + Array("tail without newline".utf8)
        let expected = Reference.text(first + second, lowercase: false)
        for (tool, suffix) in Self.tools {
            // `cat a.gz b.gz` (gzip members, zstd/lz4 frames, bzip2 streams), with an empty one between.
            let joined =
                try Self.compress(first, with: tool) + Self.compress([], with: tool) + Self.compress(second, with: tool)
            let path = try directory.file("joined.\(suffix)", joined)
            let result = try CommandRunner.run(["count", "--parcel-size", "16KiB", path])
            #expect(result.status == 0, "\(tool): \(result.stderr)")
            #expect(Bytes(result.stdout) == Bytes(expected), "\(tool) concatenated")
        }
        // zstd in many frames: the text compressed a KiB at a time, frames cut mid-line and mid-word.
        var frames: [UInt8] = []
        let whole = first + second
        for start in stride(from: 0, to: whole.count, by: 1024) {
            frames += try Self.compress(Array(whole[start..<min(start + 1024, whole.count)]), with: "zstd")
        }
        let path = try directory.file("frames.zst", frames)
        let result = try CommandRunner.run(["count", path])
        #expect(
            result.status == 0 && Bytes(result.stdout) == Bytes(expected), "zstd in \(whole.count / 1024 + 1) frames")
    }

    @Test func truncatedOrCorruptFilesAreOneLineNamingTheFileAndTheOffset() throws {
        let directory = try TemporaryDirectory()
        let text = Self.text(seed: 85, bytes: 400_000)
        let workers = [try TestWorker(cookie: "t")]
        for (tool, suffix) in Self.tools {
            let compressed = try Self.compress(text, with: tool)
            let truncated = try directory.file("cut.\(suffix)", Array(compressed[..<(compressed.count / 2)]))
            var damaged = compressed
            for i in (compressed.count / 2)..<(compressed.count / 2 + 16) { damaged[i] ^= 0x5a }
            let corrupt = try directory.file("bad.\(suffix)", damaged)
            for (path, word) in [(truncated, "truncated"), (corrupt, "byte")] {
                for cluster in [[], ["--workers", workers[0].address]] {
                    let result = try CommandRunner.run(
                        ["count"] + cluster + [path], environment: ["ELASTICFLOW_COOKIE": "t"], timeout: 60)
                    #expect(result.status != 0, "\(tool) \(path) \(cluster)")
                    #expect(result.stdout.isEmpty, "\(tool) \(path) \(cluster): nothing printed as a result")
                    let lines = result.stderr.split(separator: "\n")
                    #expect(lines.count == 1, "\(tool): \(result.stderr)")
                    #expect(result.stderr.contains(path) && result.stderr.contains("compressed byte "))
                    #expect(result.stderr.contains(word), "\(tool): \(result.stderr)")
                }
            }
            // The truncation is named at its exact size.
            let cut = try CommandRunner.run(["count", truncated])
            #expect(cut.stderr.contains("compressed byte \(compressed.count / 2),"), "\(cut.stderr)")
        }
    }

    @Test func aBombIsCutIntoParcelsNeverHeldWhole() throws {
        let directory = try TemporaryDirectory()
        // 24 MiB of short lines in a few KiB: parcels of 64 KiB each, never more.
        let line = Array("spam eggs\n".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(24 << 20)
        while text.count < 24 << 20 { text += line }
        let bomb = try directory.file("bomb.zst", try Self.compress(text, with: "zstd", extra: ["-19"]))
        let cutter = try ParcelCutter(sources: [.file(bomb)], parcelSize: 64 << 10)
        let buffer = ParcelBuffer(capacity: 64 << 10)
        var total = 0
        var largest = 0
        while let origin = try cutter.next(into: buffer) {
            total += origin.length
            largest = max(largest, origin.length)
        }
        #expect(total == text.count)
        #expect(largest <= 64 << 10)
        #expect(buffer.capacity == 64 << 10, "the parcel buffer never grew")
        let result = try CommandRunner.run(["count", "--parcel-size", "64KiB", bomb])
        #expect(result.stdoutText == "eggs \(text.count / 10)\nspam \(text.count / 10)\n")
        // 16 MiB of zero bytes is one word: refused at the word-size cap, not held.
        let zeros = try directory.file(
            "zeros.gz", try Self.compress([UInt8](repeating: 0, count: 16 << 20), with: "gzip"))
        let refused = try CommandRunner.run(["count", "--max-word-size", "1MiB", zeros])
        #expect(refused.status != 0 && refused.stdout.isEmpty)
        #expect(refused.stderr.contains("word-size cap"), "\(refused.stderr)")
    }

    @Test func sharedInputRefusesACompressedFileClearly() throws {
        let directory = try TemporaryDirectory()
        let text = Self.text(seed: 86, bytes: 100_000)
        let compressed = try Self.compress(text, with: "gzip")
        let path = try directory.file("shared.gz", compressed)
        let worker = try TestWorker(cookie: "s")
        let refused = try CommandRunner.run(
            ["count", "--workers", worker.address, "--shared-input", path], environment: ["ELASTICFLOW_COOKIE": "s"],
            timeout: 60)
        #expect(refused.status != 0 && refused.stdout.isEmpty)
        #expect(refused.stderr.contains("gzip-compressed") && refused.stderr.contains("--shared-input"))
        #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        let raw = try CommandRunner.run(
            ["count", "--workers", worker.address, "--shared-input", "--decompress", "none", path],
            environment: ["ELASTICFLOW_COOKIE": "s"], timeout: 60)
        #expect(
            raw.status == 0 && Bytes(raw.stdout) == Bytes(Reference.text(compressed, lowercase: false)), "\(raw.stderr)"
        )
    }

    @Test func theModeIsCheckedOnTheCommandLineAndInTheClusterFile() throws {
        let directory = try TemporaryDirectory()
        let bad = try CommandRunner.run(["count", "--decompress", "gzip", "-"], stdin: [])
        #expect(bad.status != 0 && bad.stderr.contains("expected auto or none"))
        let file = try directory.file(
            "cluster.json",
            Array(
                #"{"nodes": [{"name": "w", "address": "127.0.0.1:7001", "role": "worker"}], "decompress": "NONE"}"#.utf8
            ))
        let configuration = try ClusterFile.load(file).configuration(cookie: try Cookie("c"))
        #expect(configuration.decompression == .none)
        let wrong = try directory.file(
            "wrong.json",
            Array(
                #"{"nodes": [{"name": "w", "address": "127.0.0.1:7001", "role": "worker"}], "decompress": "yes"}"#.utf8)
        )
        #expect(throws: ElasticFlowError.invalidArgument("invalid decompress 'yes': expected auto or none")) {
            _ = try ClusterFile.load(wrong).configuration(cookie: try Cookie("c"))
        }
        #expect(ClusterConfiguration(workers: [], cookie: try Cookie("c")).decompression == .auto)
    }
    /// A journaled step records how it read its files: a resume in the other mode would cut a
    /// compressed file's parcels elsewhere, so it is refused, naming the mode to use.
    @Test func aStepIsResumedOnlyWithTheDecompressionItBeganWith() throws {
        let directory = try TemporaryDirectory()
        let plain = Self.text(bytes: 50_000)
        let path = try directory.file("in.txt.gz", try Self.compress(plain, with: "gzip"))
        let steps = directory.path("steps")
        let first = try CommandRunner.run(["count", "--decompress", "none", "--step-data", steps, path])
        #expect(first.status == 0, "\(first.stderr)")
        let file = steps + "/step-1/step.json"
        var json = try #require(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        #expect(json["decompression"] as? String == "none")
        json["state"] = "failed"
        json["failure"] = "made to fail by the test"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: file))
        let refused = try CommandRunner.run(["resume", "--step-data", steps])
        #expect(refused.status == 1 && refused.stdout.isEmpty, "\(refused.stderr)")
        #expect(refused.stderr.contains("resume it with --decompress none"), "\(refused.stderr)")
        let resumed = try CommandRunner.run(["resume", "--decompress", "none", "--step-data", steps])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(Bytes(resumed.stdout) == Bytes(first.stdout), "the raw-bytes count, as the step began")
    }
}

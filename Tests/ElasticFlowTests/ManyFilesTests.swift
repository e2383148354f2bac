import Foundation
import Testing

@testable import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// Many files: directories and `--files-from` on the command line, small files packed several to
/// a parcel, single node and a cluster of worker processes. Every result is compared byte for
/// byte with the reference over each file's bytes followed by a newline (a file boundary is a word
/// boundary), which is also what counting the files one by one and merging gives.
@Suite(.serialized) struct ManyFilesTests {
    /// Small files of every awkward kind (no final newline, ending in spaces, empty, a word at
    /// both ends), in nested folders, plus one file larger than the small parcel sizes.
    static func corpus(in directory: TemporaryDirectory, files: Int = 300) throws -> (root: String, paths: [String]) {
        let root = directory.path("corpus")
        var random = RandomText(state: 81)
        var paths: [String] = []
        for index in 0..<files {
            let folder = "\(root)/d\(index % 7)/e\(index % 3)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            var bytes: [UInt8]
            switch index % 5 {
            case 0: bytes = []
            case 1: bytes = Array("head".utf8) + random.bytes(Int(random.next() % 900)) + Array("tail".utf8)
            case 2: bytes = random.bytes(Int(random.next() % 3000)) + Array("  ".utf8)
            case 3: bytes = random.bytes(Int(random.next() % 200)) + [0x0A]
            default: bytes = Array("word".utf8)
            }
            let path = "\(folder)/f\(index).txt"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            paths.append(path)
        }
        var generator = CorpusGenerator(seed: 82)
        let big = root + "/big.txt"
        try Data(generator.generate(byteCount: 300_000)).write(to: URL(fileURLWithPath: big))
        paths.append(big)
        paths.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        return (root, paths)
    }

    /// The reference: every file's bytes, each followed by a newline.
    static func reference(_ paths: [String]) throws -> [UInt8] {
        var all: [UInt8] = []
        for path in paths {
            all += try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            all.append(0x0A)
        }
        return Reference.text(all, lowercase: false)
    }

    @Test func packedParcelsHoldSeveralFilesAndCountLikeEachFileAlone() throws {
        let directory = try TemporaryDirectory()
        let (_, paths) = try Self.corpus(in: directory)
        let expected = try Self.reference(paths)
        for parcelSize in [1, 100, 4096, 64 << 10, 4 << 20] {
            var options = WordCountOptions(threads: 2, parcelSize: parcelSize)
            options.partitions = 4
            let (counter, statistics) = try LocalWordCount.run(paths.map(DataSource.file), options: options)
            #expect(try counter.rendered(format: .text) == expected, "parcel size \(parcelSize)")
            if parcelSize >= 64 << 10 {
                #expect(statistics.parcels < 20, "\(statistics.parcels) parcels of \(parcelSize) bytes")
            }
        }
        // The parcels: whole files after the first one's tail, a newline added only where one is
        // missing between two files of a parcel.
        let cutter = try ParcelCutter(sources: paths.map(DataSource.file), parcelSize: 8192)
        let buffer = ParcelBuffer(capacity: 8192)
        var covered = 0
        var parcels: [UInt8] = []
        var packed = 0
        while let origin = try cutter.next(into: buffer) {
            #expect(origin.lastSource >= origin.source)
            covered = max(covered, origin.lastSource + 1)
            if origin.lastSource > origin.source {
                packed += 1
                #expect(buffer.count <= 8192)
            }
            parcels += buffer.bytes
            parcels.append(0x0A)
        }
        #expect(covered == paths.count)
        #expect(packed > 10)
        #expect(Reference.text(parcels, lowercase: false) == expected)
        let bytes = try paths.reduce(0) { $0 + (try Data(contentsOf: URL(fileURLWithPath: $1))).count }
        #expect(parcels.count >= bytes && parcels.count <= bytes + 2 * paths.count)
    }

    /// Each non-empty file's bytes, with a newline after those that lack one: the lines of every
    /// file, as one file.
    static func lines(of paths: [String]) throws -> [UInt8] {
        var joined: [UInt8] = []
        for path in paths {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            joined += bytes
            if let last = bytes.last, last != 0x0A { joined.append(0x0A) }
        }
        return joined
    }

    @Test func lineTasksSeeTheSameLinesPackedOrNot() throws {
        let directory = try TemporaryDirectory()
        let (root, paths) = try Self.corpus(in: directory, files: 120)
        let one = try directory.file("one.txt", try Self.lines(of: paths))
        let config = try directory.file("cluster.json", Array(#"{"nodes": []}"#.utf8))
        for task in ["line-lengths", "longest-line", "wordcount"] {
            let alone = try CommandRunner.run(["run", "--config", config, "--task", task, "--parcel-size", "1MiB", one])
            let packed = try CommandRunner.run([
                "run", "--config", config, "--task", task, "--parcel-size", "1MiB", root,
            ])
            #expect(alone.status == 0 && packed.status == 0, "\(alone.stderr) \(packed.stderr)")
            #expect(!alone.stdout.isEmpty && Bytes(packed.stdout) == Bytes(alone.stdout), "\(task)")
        }
    }

    @Test func aDirectoryArgumentCountsEveryFileBelowIt() throws {
        let directory = try TemporaryDirectory()
        let (root, paths) = try Self.corpus(in: directory)
        let expected = try Self.reference(paths)
        let counted = try CommandRunner.run(["count", root])
        #expect(counted.status == 0, "\(counted.stderr)")
        #expect(Bytes(counted.stdout) == Bytes(expected))
        #expect(counted.stderr.isEmpty)
        // The tree of SourceListTests: links followed to files, never into folders; loops skipped.
        let tree = try SourceListTests.tree(in: directory)
        let listed = try SourceList(expanding: [tree]).sources.map(\.description)
        let treeCount = try CommandRunner.run(["count", tree])
        let treeExpected = try Self.reference(listed)
        #expect(treeCount.status == 0 && Bytes(treeCount.stdout) == Bytes(treeExpected), "\(treeCount.stderr)")
    }

    @Test func filesFromTakesNULSeparatedNamesWithSpacesAndNewlines() throws {
        let directory = try TemporaryDirectory()
        let names = ["with space.txt", "with\nnewline.txt", " leading", "trailing \n", "plain"]
        var paths: [String] = []
        var random = RandomText(state: 83)
        for name in names { paths.append(try directory.file(name, random.bytes(500))) }
        let expected = try Self.reference(paths)
        let nulList = Array(paths.map { $0 + "\0" }.joined().utf8)
        let listFile = try directory.file("list0", nulList)
        for arguments in [["--files-from", listFile], ["--files-from", listFile, "--null"], ["--files-from", "-"]] {
            let result = try CommandRunner.run(["count"] + arguments, stdin: nulList)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            #expect(Bytes(result.stdout) == Bytes(expected), "\(arguments)")
        }
        // Newline-separated: names without newlines; relative names are taken from the current directory.
        let plain = ["with space.txt", " leading", "plain"]
        let lines = try directory.file("list", Array(plain.joined(separator: "\n").utf8))
        let relative = try CommandRunner.run(["count", "--files-from", lines], directory: directory.url.path)
        let relativeExpected = try Self.reference(plain.map(directory.path))
        #expect(Bytes(relative.stdout) == Bytes(relativeExpected), "\(relative.stderr)")
        // FILE arguments come first, then the list; a list entry may be a directory.
        let (root, corpus) = try Self.corpus(in: directory, files: 20)
        let mixed = try directory.file("mixed", Array((root + "\n").utf8))
        let both = try CommandRunner.run(["count", paths[0], "--files-from", mixed])
        let bothExpected = try Self.reference([paths[0]] + corpus)
        #expect(Bytes(both.stdout) == Bytes(bothExpected), "\(both.stderr)")
    }

    @Test func badListsGetOneLineAndANonZeroExit() throws {
        let directory = try TemporaryDirectory()
        let listed = try directory.file("list", Array("\(directory.path("missing"))\n".utf8))
        let cases: [([String], [UInt8]?, String)] = [
            (["count", "--files-from", directory.path("nope")], nil, "cannot open the file list"),
            (["count", "--files-from", directory.url.path], nil, "Is a directory"),
            (["count", "--files-from", listed], nil, "No such file or directory"),
            (["count", "-", "--files-from", "-"], Array("x\n".utf8), "standard input is both"),
            (["count", "--files-from", "-"], Array("-\n".utf8), "names '-'"),
        ]
        for (arguments, stdin, message) in cases {
            let result = try CommandRunner.run(arguments, stdin: stdin ?? [])
            #expect(result.status != 0, "\(arguments)")
            #expect(result.stdout.isEmpty, "\(arguments)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
    }

    /// An empty list (or empty folders) is an empty count and exit 0, as GNU `wc
    /// --files0-from=/dev/null`, standard input never read in its place, and one line on standard
    /// error saying that nothing was named.
    @Test func anEmptyListIsAnEmptyCountWithANote() throws {
        let directory = try TemporaryDirectory()
        let empty = directory.path("empty")
        try FileManager.default.createDirectory(atPath: empty + "/sub", withIntermediateDirectories: true)
        let cases: [([String], String)] = [
            (
                ["count", "--files-from", "/dev/null"],
                "no input files: --files-from '/dev/null' holds no file to count"
            ),
            (["count", "--files-from", "-"], "--files-from '-' holds no file to count"),
            (
                ["count", "-0", "--files-from", "/dev/null", "--files-from", "/dev/null"],
                "'/dev/null', '/dev/null' hold"
            ),
            (["count", empty], "no input files: '\(empty)' holds no file to count"),
        ]
        for (arguments, note) in cases {
            let result = try CommandRunner.run(
                arguments, stdin: arguments.contains("-") ? [] : Array("not read\n".utf8))
            #expect(result.status == 0 && result.stdout.isEmpty, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(note), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        let json = try CommandRunner.run(["count", "--format", "json", "--files-from", "/dev/null"])
        let emptyFile = try CommandRunner.run(["count", "--format", "json", try directory.file("e.txt", [])])
        #expect(
            json.status == 0 && Bytes(json.stdout) == Bytes(emptyFile.stdout), "the empty count, as for an empty file")
    }

    @Test func anUnreadableEntryStopsTheJobUnlessSkipped() throws {
        let directory = try TemporaryDirectory()
        let (root, paths) = try Self.corpus(in: directory, files: 30)
        symlink("loop", root + "/d1/loop")  // a symlink loop: unreadable, for root too
        symlink("nowhere", root + "/d2/dangling")
        var unreadable = [root + "/d1/loop", root + "/d2/dangling"]
        if getuid() != 0 {  // root reads a file with mode 000: only the links above are unreadable then
            chmod(paths[3], 0)
            unreadable.append(paths[3])
        }
        let stopped = try CommandRunner.run(["count", root])
        #expect(stopped.status != 0 && stopped.stdout.isEmpty)
        #expect(stopped.stderr.split(separator: "\n").count == 1)
        #expect(stopped.stderr.contains("'\(root)/d1/loop'"), "\(stopped.stderr)")
        let skipped = try CommandRunner.run(["count", "--skip-unreadable", root])
        #expect(skipped.status == 0, "\(skipped.stderr)")
        let readable = try Self.reference(paths.filter { !unreadable.contains($0) })
        #expect(Bytes(skipped.stdout) == Bytes(readable))
        let lines = skipped.stderr.split(separator: "\n")
        #expect(lines.count == unreadable.count + 1, "\(skipped.stderr)")
        for path in unreadable { #expect(skipped.stderr.contains("'\(path)'"), "\(path)") }
        // Log lines: a timestamp, the level and the CLI's logger, then the count.
        let last = lines.last ?? ""
        #expect(last.dropFirst(24).hasPrefix(" warning elasticflow: "), "\(last)")
        #expect(last.hasSuffix("elasticflow: skipped \(unreadable.count) unreadable entries (--skip-unreadable)"))
    }

    @Test func aClusterOfWorkerProcessesCountsPackedParcelsLikeOneNode() throws {
        let directory = try TemporaryDirectory()
        let (root, paths) = try Self.corpus(in: directory)
        let expected = try Self.reference(paths)
        let workers = [try TestWorker(cookie: "p"), try TestWorker(cookie: "p")]
        let list = try directory.file("list", Array(paths.map { $0 + "\0" }.joined().utf8))
        // none: single-file parcels leave by sendfile, packed ones from their buffer; lz4: all buffered.
        for compression in ["none", "lz4"] {
            for size in ["4KiB", "64KiB", "4MiB"] {
                for source in [[root], ["--files-from", list]] {
                    let result = try CommandRunner.run(
                        [
                            "count", "--workers", workers.map(\.address).joined(separator: ","), "--compression",
                            compression, "--parcel-size", size, "--no-master-work", "--summary",
                        ] + source, environment: ["ELASTICFLOW_COOKIE": "p"])
                    #expect(result.status == 0, "\(compression) \(size): \(result.stderr)")
                    #expect(Bytes(result.stdout) == Bytes(expected), "\(compression) \(size) \(source)")
                }
            }
        }
        // Shared input splits each file by itself (no packing there): the same bytes.
        let shared = try CommandRunner.run(
            ["count", "--workers", workers.map(\.address).joined(separator: ","), "--shared-input", root],
            environment: ["ELASTICFLOW_COOKIE": "p"])
        #expect(shared.status == 0 && Bytes(shared.stdout) == Bytes(expected), "\(shared.stderr)")
    }

    @Test func aJournaledStepOfPackedParcelsIsCancelledAndRetried() throws {
        let directory = try TemporaryDirectory()
        let (root, paths) = try Self.corpus(in: directory)
        let config = try directory.file("cluster.json", Array(#"{"nodes": []}"#.utf8))
        let steps = directory.path("steps")
        let process = Process()
        process.executableURL = CommandRunner.executable
        process.arguments = [
            "run", "--config", config, "--task", "slow-wordcount", "--param", "delay-ms=80", "--parcel-size", "8KiB",
            "--step-data", steps, root,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Interrupt once a checkpoint holds some parcels (it is written every second).
        let checkpoint = steps + "/step-1/checkpoint"
        while !FileManager.default.fileExists(atPath: checkpoint) && process.isRunning { usleep(20_000) }
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let retried = try CommandRunner.run(["retry", "--step-data", steps, "--summary"])
        #expect(retried.status == 0, "\(retried.stderr)")
        let expected = try Self.reference(paths)
        #expect(Bytes(retried.stdout) == Bytes(expected))
        let receipts = try String(contentsOfFile: steps + "/step-1/receipts.log", encoding: .utf8)
        #expect(receipts.split(separator: "\n").count < paths.count, "packed: fewer receipts than files")
    }
}

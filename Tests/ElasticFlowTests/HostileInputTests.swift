import Foundation
import Testing

@testable import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// Sources that are not regular files, and words with no sensible end, through the real CLI.
@Suite struct HostileInputTests {
    /// A named FIFO fed by a writer process is opened once and read in order: the count is exact
    /// (it used to be opened, closed and opened again, losing data and hanging), locally and as a
    /// master's source.
    @Test(arguments: [false, true])
    func aFIFOIsReadOnceAndExactly(onCluster: Bool) throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 11)
        let text = generator.generate(byteCount: 3_000_000)  // many parcels, far more than a pipe holds
        let source = try directory.file("corpus.txt", text)
        let fifo = directory.path("fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/bin/sh")
        writer.arguments = ["-c", "exec cat \"$0\" > \"$1\"", source, fifo]
        try writer.run()
        defer { if writer.isRunning { writer.terminate() } }
        var arguments = ["count", "--parcel-size", "64KiB", fifo]
        var worker: TestWorker?
        if onCluster {
            worker = try TestWorker(cookie: "fifo-cookie")
            arguments = ["count", "--workers", worker!.address, "--cookie", "fifo-cookie", "--parcel-size", "64KiB", fifo]
        }
        let result = try CommandRunner.run(arguments, timeout: 60)
        writer.waitUntilExit()
        #expect(!result.signalled, "\(result.stderr)")
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == Reference.text(text, lowercase: false))
        #expect(writer.terminationStatus == 0)  // never cut off (SIGPIPE) by a close and reopen
        _ = worker?.stop()
    }

    /// `/dev/stdin` given by path (a pipe underneath) is read once, exactly.
    @Test func devStdinByPathIsExact() throws {
        var generator = CorpusGenerator(seed: 12)
        let text = generator.generate(byteCount: 500_000)
        let result = try CommandRunner.run(["count", "--parcel-size", "16KiB", "/dev/stdin"], stdin: text, timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == Reference.text(text, lowercase: false))
    }

    /// A word longer than `--max-word-size` is one line naming the file, non-zero: whether the
    /// word is longer than a parcel (the cutter refuses it) or inside one (the counter does), on
    /// one node and as a master with a worker (the step fails once, with that reason).
    @Test func aWordOverTheCapIsOneLineNamingTheFile() throws {
        let directory = try TemporaryDirectory()
        let long = [UInt8](repeating: UInt8(ascii: "w"), count: 300 << 10)
        let path = try directory.file("long.txt", Array("a b\nc ".utf8) + long + Array(" d\n".utf8))
        let worker = try TestWorker(cookie: "word-cookie")
        let runs: [[String]] = [
            ["count", "--max-word-size", "256KiB", "--parcel-size", "64KiB", path],  // longer than a parcel
            ["count", "--max-word-size", "256KiB", "--parcel-size", "1MiB", path],  // inside one parcel
            [
                "count", "--workers", worker.address, "--cookie", "word-cookie", "--no-master-work",
                "--max-word-size", "256KiB", "--parcel-size", "64KiB", path,
            ],
        ]
        for arguments in runs {
            let result = try CommandRunner.run(arguments, timeout: 60)
            #expect(result.status != 0 && !result.signalled, "\(arguments): \(result.stderr)")
            #expect(result.stdout.isEmpty)
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("long.txt") && result.stderr.contains("word-size cap"), "\(result.stderr)")
        }
        // Under the cap the same file counts exactly.
        let fine = try CommandRunner.run(["count", "--max-word-size", "512KiB", "--parcel-size", "64KiB", path])
        #expect(fine.status == 0)
        #expect(fine.stdout == Reference.text(try Array(Data(contentsOf: URL(fileURLWithPath: path))), lowercase: false))
        _ = worker.stop()
    }

    /// Memory for a long word stays within a small multiple of the cap: a 64 MiB word with a 4 MiB
    /// cap, and `/dev/zero` (a word with no end), each fail with a peak RSS far below the word.
    @Test func aLongWordDoesNotGrowMemory() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("huge-word.txt")
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        let chunk = Data(repeating: UInt8(ascii: "x"), count: 1 << 20)
        for _ in 0..<64 { handle.write(chunk) }
        try handle.close()
        for source in [path, "/dev/zero"] {
            let run = try PeakMemory.run(["count", "--max-word-size", "4MiB", source])
            #expect(run.status != 0 && !run.signalled, "\(source): \(run.stderr)")
            #expect(run.stderr.contains("word-size cap"), "\(source): \(run.stderr)")
            // The process itself takes ~20-40 MiB; the word would take 64 MiB and more.
            #expect(run.peakKiB < 48 << 10, "\(source): peak RSS \(run.peakKiB) KiB")
        }
    }
}

/// Runs the CLI and reports its peak resident set (`wait4`'s rusage of that one child).
enum PeakMemory {
    struct Run {
        var status: Int32
        var signalled: Bool
        var stderr: String
        var peakKiB: Int
    }

    static func run(_ arguments: [String]) throws -> Run {
        let errorPath = FileManager.default.temporaryDirectory.appendingPathComponent("peak-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: errorPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ([CommandRunner.executable.path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, CommandRunner.executable.path, &actions, nil, argv, environ)
        guard spawned == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .EIO) }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let stderr = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        let signalled = status & 0x7f != 0
        return Run(status: (status >> 8) & 0xff, signalled: signalled, stderr: stderr, peakKiB: usage.ru_maxrss)
    }
}

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
            arguments = [
                "count", "--workers", worker!.address, "--cookie", "fifo-cookie", "--parcel-size", "64KiB", fifo,
            ]
        }
        let result = try CommandRunner.run(arguments, timeout: 60)
        writer.waitUntilExit()
        #expect(!result.signalled, "\(result.stderr)")
        #expect(result.status == 0, "\(result.stderr)")
        // A Bool, not the arrays: a failing comparison of 3 MB would have the test library diff
        // them for minutes on a shared thread.
        let exact = result.stdout == Reference.text(text, lowercase: false)
        #expect(exact, "\(result.stdout.count) bytes of output")
        #expect(writer.terminationStatus == 0)  // never cut off (SIGPIPE) by a close and reopen
        _ = worker?.stop()
    }

    /// `/dev/stdin` given by path (a pipe underneath) is read once, exactly.
    @Test func devStdinByPathIsExact() throws {
        var generator = CorpusGenerator(seed: 12)
        let text = generator.generate(byteCount: 500_000)
        let result = try CommandRunner.run(["count", "--parcel-size", "16KiB", "/dev/stdin"], stdin: text, timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(Bytes(result.stdout) == Bytes(Reference.text(text, lowercase: false)))
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
            // Inside a parcel, on the worker: its ERROR says the input is bad, and the master fails
            // the step at once with the reason, instead of retrying it 4 times.
            [
                "count", "--workers", worker.address, "--cookie", "word-cookie", "--no-master-work",
                "--max-word-size", "256KiB", "--parcel-size", "1MiB", path,
            ],
        ]
        for arguments in runs {
            let result = try CommandRunner.run(arguments, timeout: 60)
            #expect(result.status != 0 && !result.signalled, "\(arguments): \(result.stderr)")
            #expect(result.stdout.isEmpty)
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("long.txt") && result.stderr.contains("word-size cap"), "\(result.stderr)")
            #expect(!result.stderr.contains("times"), "retried: \(result.stderr)")
        }
        // Inside the third parcel of several a worker combines: the two before it, counted into
        // the same table, are lost with it and sent again; the step still fails once, with the
        // word's reason.
        let lines = [UInt8](String(repeating: "lorem ipsum dolor\n", count: 130_000).utf8)  // 2.3 MB
        let later = try directory.file("later.txt", lines + Array("c ".utf8) + long + Array(" d\n".utf8))
        let combined = try CommandRunner.run(
            [
                "count", "--workers", worker.address, "--cookie", "word-cookie", "--no-master-work",
                "--max-word-size", "256KiB", "--parcel-size", "1MiB", later,
            ], timeout: 60)
        #expect(combined.status != 0 && !combined.signalled, "\(combined.stderr)")
        #expect(combined.stderr.split(separator: "\n").count == 1, "\(combined.stderr)")
        #expect(
            combined.stderr.contains("later.txt") && combined.stderr.contains("word-size cap"), "\(combined.stderr)")
        // Under the cap the same file counts exactly.
        let fine = try CommandRunner.run(["count", "--max-word-size", "512KiB", "--parcel-size", "64KiB", path])
        #expect(fine.status == 0)
        #expect(
            fine.stdout == Reference.text(try Array(Data(contentsOf: URL(fileURLWithPath: path))), lowercase: false))
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
            guard let run = try PeakMemory.run(["count", "--max-word-size", "4MiB", source]) else {
                let plain = try CommandRunner.run(["count", "--max-word-size", "4MiB", source], timeout: 60)
                #expect(plain.status != 0 && plain.stderr.contains("word-size cap"))
                continue  // no GNU time here: the error is checked, the memory is not
            }
            #expect(run.status != 0 && !run.signalled, "\(source): \(run.stderr)")
            #expect(run.stderr.contains("word-size cap"), "\(source): \(run.stderr)")
            // The process itself takes ~20-40 MiB; the word would take 64 MiB and more.
            #expect(run.peakKiB < 48 << 10, "\(source): peak RSS \(run.peakKiB) KiB")
        }
    }
}

extension HostileInputTests {
    /// A parcel that expands to ~96 MiB from a few hundred KB of zstd (a bomb within the 256 MiB
    /// limit) grows a worker thread's decompression buffer; once answered, the worker gives it
    /// back: its resident set returns near where it was (it used to keep 645 MiB after a 6.4 KB
    /// bomb).
    @Test func aWorkerGivesBackWhatABigParcelGrew() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("big.txt")
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        let line = Data(([UInt8](repeating: UInt8(ascii: "q"), count: 1023) + [0x0A]))
        let block = Data((0..<1024).flatMap { _ in line })  // 1 MiB of 1023-byte words
        for _ in 0..<100 { handle.write(block) }
        try handle.close()
        let worker = try TestWorker(
            cookie: "big-cookie", arguments: ["worker", "--listen", "127.0.0.1:0", "--threads", "1"])
        let before = try Self.residentKiB(worker.process.processIdentifier)
        let result = try CommandRunner.run(
            [
                "count", "--workers", worker.address, "--cookie", "big-cookie", "--no-master-work", "--compression",
                "zstd", "--parcel-size", "96MiB", "--top", "1", path,
            ], timeout: 120)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdoutText == String(repeating: "q", count: 1023) + " 102400\n")
        let after = try Self.residentKiB(worker.process.processIdentifier)
        #expect(after < before + 40 << 10, "worker RSS \(before) KiB before, \(after) KiB after a 96 MiB parcel")
        _ = worker.stop()
    }

    /// VmRSS of a process, in KiB (/proc/PID/status).
    static func residentKiB(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let value = Int(line.split(whereSeparator: \.isWhitespace)[1])
        else { return Int.max }
        return value
    }
}

/// Runs the CLI under GNU time, which forks it and reports the child's own peak resident set
/// (`%M`, KiB). Our own `wait4` would not do: a child spawned from this test process inherits the
/// test process's high-water mark across `exec` (Linux keeps `maxrss` in the signal struct), and
/// other tests here decompress hundreds of MiB. nil when /usr/bin/time is missing.
enum PeakMemory {
    struct Run {
        var status: Int32
        var signalled: Bool
        var stderr: String
        var peakKiB: Int
    }

    static func run(_ arguments: [String]) throws -> Run? {
        let time = "/usr/bin/time"
        guard FileManager.default.isExecutableFile(atPath: time) else { return nil }
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("peak-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: report) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: time)
        process.arguments = ["-f", "%M %x", "-o", report, CommandRunner.executable.path] + arguments
        let errors = privatePipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let fields = ((try? String(contentsOfFile: report, encoding: .utf8)) ?? "").split(
            whereSeparator: \.isWhitespace)
        // GNU time reports "Command exited with non-zero status N" first, then our format line.
        let peak = fields.count >= 2 ? Int(fields[fields.count - 2]) ?? Int.max : Int.max
        let signalled = fields.contains("signal") || process.terminationReason == .uncaughtSignal
        return Run(status: process.terminationStatus, signalled: signalled, stderr: stderr, peakKiB: peak)
    }
}

import Foundation
import Testing

@testable import ElasticFlow

/// Shared-input mode with real worker processes: the master sends receipts only, each worker
/// reads its own byte range. Every result is compared byte for byte with the single-node count
/// and the naive reference.
@Suite(.serialized) struct SharedInputTests {
    static func configuration(_ workers: [TestWorker], cookie: String, parcelSize: Int) throws -> ClusterConfiguration {
        var configuration = ClusterConfiguration(
            workers: try workers.map { try NodeAddress(parsing: $0.address) }, cookie: try Cookie(cookie))
        configuration.sharedInput = true
        configuration.parcelSize = parcelSize
        configuration.masterProcesses = false
        configuration.heartbeatTimeout = .seconds(1.0)
        configuration.heartbeatInterval = .seconds(0.2)
        return configuration
    }

    static func count(_ master: Master, _ path: String, lowercase: Bool = false) throws -> (StepReport, [UInt8]) {
        let report = try master.run(
            task: "wordcount", sources: [.file(path)], options: TaskOptions(lowercase: lowercase))
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        return (report, try counter.rendered(format: .text))
    }

    /// Edge inputs, each cut at every split size from 1 byte to past its end.
    @Test func edgeInputsAtEverySplitSizeMatchTheReference() throws {
        let directory = try TemporaryDirectory()
        let workers = [try TestWorker(cookie: "s"), try TestWorker(cookie: "s")]
        let inputs: [(String, [UInt8])] = [
            ("crlf", Array("one two\r\nthree\r\n\r\nfour five\r\n".utf8)),
            ("no-final-newline", Array("alpha beta\ngamma\n delta epsilon".utf8)),
            ("blank-lines", Array("\n\n a \n\n\nb\n\n".utf8)),
            ("one-long-word", [UInt8](repeating: 0x61, count: 37) + Array(" z\n".utf8)),
            ("raw", [0x00, 0xFF, 0x20, 0xC3, 0xA9, 0x0A, 0x0B, 0x41, 0x0C, 0x0D, 0x0A, 0x80, 0x09, 0x42]),
        ]
        for (name, text) in inputs {
            let path = try directory.file(name, text)
            let reference = Reference.text(text, lowercase: false)
            for size in 1...(text.count + 1) {
                let master = Master(configuration: try Self.configuration(workers, cookie: "s", parcelSize: size))
                let (report, output) = try Self.count(master, path)
                #expect(output == reference, "\(name), split size \(size)")
                #expect(report.summary.receiptsClosed == report.summary.parcels)
            }
        }
    }

    @Test func theCommandLineMatchesTheSingleNodeCountOnLongLinesAndEmptyFiles() throws {
        let directory = try TemporaryDirectory()
        let workers = [try TestWorker(cookie: "s"), try TestWorker(cookie: "s")]
        var generator = CorpusGenerator(seed: 5)
        var text = generator.generate(byteCount: 600_000)
        text += [UInt8](repeating: UInt8(ascii: "Q"), count: 300_000) + Array(" end of a very long line\n".utf8)
        text += generator.generate(byteCount: 100_000)
        let path = try directory.file("corpus.txt", text)
        let empty = try directory.file("empty.txt", [])
        let tail = try directory.file("tail.txt", Array("last words without newline".utf8))
        let single = try CommandRunner.run(["count", "--lowercase", path, empty, tail])
        #expect(single.status == 0, "\(single.stderr)")
        for size in ["1KiB", "64KiB", "100KiB", "1MiB"] {
            for combine in ["1", "16"] {
                let result = try CommandRunner.run(
                    [
                        "count", "--lowercase", "--shared-input", "--workers",
                        workers.map(\.address).joined(separator: ","), "--cookie", "s", "--no-master-work",
                        "--parcel-size", size, "--combine", combine, "--in-flight", "8", path, empty, tail,
                    ])
                #expect(result.status == 0, "\(result.stderr)")
                #expect(Bytes(result.stdout) == Bytes(single.stdout), "parcel size \(size), combine \(combine)")
            }
        }
        var all: [UInt8] = []
        for file in [path, empty, tail] { all += try Array(Data(contentsOf: URL(fileURLWithPath: file))) + [0x0A] }
        #expect(Bytes(single.stdout) == Bytes(Reference.text(all, lowercase: true)))
    }

    @Test func flowTasksOverLinesGiveTheCopyModeResult() throws {
        let directory = try TemporaryDirectory()
        let workers = [try TestWorker(cookie: "s"), try TestWorker(cookie: "s")]
        var generator = CorpusGenerator(seed: 8)
        let path = try directory.file("lines.txt", generator.generate(byteCount: 300_000))
        let cluster = workers.map(\.address).joined(separator: ",")
        let config = try directory.file("cluster.json", Array(#"{"nodes": []}"#.utf8))
        for task in ["line-lengths", "longest-line", "word-frequencies"] {
            let copy = try CommandRunner.run(
                ["run", "--config", config, "--workers", cluster, "--cookie", "s", "--task", task, path])
            let shared = try CommandRunner.run(
                [
                    "run", "--config", config, "--workers", cluster, "--cookie", "s", "--task", task, "--shared-input",
                    "--parcel-size", "7KiB", "--no-master-work", path,
                ])
            #expect(copy.status == 0 && shared.status == 0, "\(copy.stderr) \(shared.stderr)")
            #expect(Bytes(shared.stdout) == Bytes(copy.stdout), "\(task)")
        }
    }

    @Test func aWorkerKilledMidStepLosesNothing() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 12)
        let text = generator.generate(byteCount: 2_000_000)
        let path = try directory.file("corpus.txt", text)
        let workers = [try TestWorker(cookie: "k"), try TestWorker(cookie: "k")]
        var configuration = try Self.configuration(workers, cookie: "k", parcelSize: 16 << 10)
        configuration.inFlight = 4
        let master = Master(configuration: configuration)
        let progress = ReliabilityTests.Progress()
        master.add(progress)
        let step = ReliabilityTests.BackgroundStep(
            master, task: "slow-wordcount", path: path, options: TaskOptions(parameters: ["delay-ms": "2"]))
        progress.wait(forAggregated: 20)
        kill(workers[0].process.processIdentifier, SIGKILL)
        let report = try step.wait()
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        #expect(report.summary.receiptsClosed == report.summary.parcels)
        #expect(report.summary.retries >= 1, "the killed worker held parcels that went elsewhere")
        #expect(report.summary.bytesSentRaw == 0, "shared input: no parcel byte crosses the wire")
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func chaosAt45PercentWithCombiningStaysExact(seed: UInt64) throws {
        let directory = try TemporaryDirectory()
        let workers = [try TestWorker(cookie: "c"), try TestWorker(cookie: "c")]
        var generator = CorpusGenerator(seed: seed)
        let text = generator.generate(byteCount: 1_000_000)
        let path = try directory.file("corpus-\(seed).txt", text)
        let result = try CommandRunner.run(
            [
                "count", "--lowercase", "--shared-input", "--workers", workers.map(\.address).joined(separator: ","),
                "--cookie", "c", "--parcel-size", "8KiB", "--in-flight", "8", "--combine", "8", "--chaos", "45",
                "--chaos-seed", "\(seed)", "--summary", path,
            ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(Bytes(result.stdout) == Bytes(Reference.text(text, lowercase: true)), "seed \(seed)")
        let chaosLine = result.stderr.split(separator: "\n").first { $0.contains("chaos (injected/recovered)") }
        #expect(chaosLine != nil, "\(result.stderr)")
    }

    @Test func aMasterKilledMidStepResumesToTheSameResult() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 34)
        let text = generator.generate(byteCount: 3_000_000)
        let path = try directory.file("t.txt", text)
        let workers = [try TestWorker(cookie: "r"), try TestWorker(cookie: "r")]
        let arguments = [
            "count", "--shared-input", "--workers", workers.map(\.address).joined(separator: ","), "--parcel-size",
            "16KiB", "--combine", "4", "--step-data", directory.path("steps"), "--summary", path,
        ]
        let process = Process()
        process.executableURL = CommandRunner.executable
        process.arguments = arguments
        process.environment = ["ELASTICFLOW_COOKIE": "r"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: 0.5)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let resumed = try CommandRunner.run(arguments, environment: ["ELASTICFLOW_COOKIE": "r"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(Bytes(resumed.stdout) == Bytes(Reference.text(text, lowercase: false)))
    }

    @Test func aFileModifiedDuringTheStepFailsItNamingTheFile() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 40)
        let text = generator.generate(byteCount: 1_000_000)
        let path = try directory.file("changing.txt", text)
        let workers = [try TestWorker(cookie: "m"), try TestWorker(cookie: "m")]
        var configuration = try Self.configuration(workers, cookie: "m", parcelSize: 16 << 10)
        configuration.inFlight = 2
        let master = Master(configuration: configuration)
        let progress = ReliabilityTests.Progress()
        master.add(progress)
        let step = ReliabilityTests.BackgroundStep(
            master, task: "slow-wordcount", path: path, options: TaskOptions(parameters: ["delay-ms": "5"]))
        progress.wait(forAggregated: 5)
        // Same size, other bytes: only the modification time and the checksums tell.
        var changed = text
        for index in stride(from: 0, to: changed.count, by: 97) where changed[index] != 0x0A { changed[index] = 0x5A }
        try Data(changed).write(to: URL(fileURLWithPath: path))
        kill(workers[0].process.processIdentifier, SIGKILL)  // its parcels are retried on the new bytes
        #expect {
            _ = try step.wait()
        } throws: { error in
            "\(error)".contains(path) && "\(error)".contains("changed")
        }
    }

    @Test func aWorkerThatCannotReadTheFileLeavesItsParcelsToTheOthers() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 41)
        let text = generator.generate(byteCount: 400_000)
        let path = try directory.file("corpus.txt", text)
        // Another view of the same path: the file is not there for this worker (a working
        // directory of its own, and a relative path).
        let elsewhere = try TemporaryDirectory()
        let blind = try TestWorker(
            cookie: "u", arguments: ["worker", "--listen", "127.0.0.1:0", "--threads", "2"],
            directory: elsewhere.url.path)
        let good = try TestWorker(
            cookie: "u", arguments: ["worker", "--listen", "127.0.0.1:0", "--threads", "2"],
            directory: directory.url.path)
        func count(_ workers: [TestWorker]) throws -> CommandResult {
            try CommandRunner.run(
                [
                    "count", "--shared-input", "--workers", workers.map(\.address).joined(separator: ","),
                    "--no-master-work", "--parcel-size", "16KiB", "--summary", "corpus.txt",
                ], environment: ["ELASTICFLOW_COOKIE": "u"], directory: directory.url.path)
        }
        let result = try count([good, blind])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(Bytes(result.stdout) == Bytes(Reference.text(text, lowercase: false)))
        #expect(!result.stderr.contains(" 0 task errors"), "the blind worker answered errors: \(result.stderr)")

        // No node can read it: a clear failure naming the file, nothing printed as a result.
        let failed = try count([blind])
        #expect(failed.status != 0)
        #expect(failed.stdout.isEmpty)
        // One error line, last, naming the file (the worker's exclusion is noted on the line before).
        let lines = failed.stderr.split(separator: "\n")
        #expect(lines.last?.contains("corpus.txt") == true, "\(failed.stderr)")
        #expect(lines.filter { $0.hasPrefix("elasticflow: error:") }.count == 1, "\(failed.stderr)")
    }
}

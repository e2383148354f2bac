import Foundation
import Logging
import Testing

@testable import ElasticFlow

/// Logging through swift-log: the CLI's `--log-level` and `--log-format` on real processes, the
/// worker's and the master's `Logger` in this process.
struct LoggingTests {
    /// `2026-12-02T15:23:44.123Z`: ISO 8601, UTC, milliseconds.
    static func isTimestamp(_ text: some StringProtocol) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 24 else { return false }
        let digits: Set<Int> = Set(0..<24).subtracting([4, 7, 10, 13, 16, 19, 23])
        let separators: [Int: UInt8] = [4: 0x2D, 7: 0x2D, 10: 0x54, 13: 0x3A, 16: 0x3A, 19: 0x2E, 23: 0x5A]
        for (index, byte) in bytes.enumerated() {
            if digits.contains(index) {
                guard (0x30...0x39).contains(byte) else { return false }
            } else if separators[index] != byte {
                return false
            }
        }
        return true
    }

    static func lines(_ text: String) -> [Substring] { text.split(separator: "\n") }

    /// Every line as a JSON object with timestamp, level, label, message and a metadata object.
    static func records(_ text: String) -> [[String: Any]]? {
        var records: [[String: Any]] = []
        for line in lines(text) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let timestamp = object["timestamp"] as? String, isTimestamp(timestamp),
                let level = object["level"] as? String, Logger.Level(rawValue: level) != nil,
                object["message"] is String, object["label"] is String, object["metadata"] is [String: String]
            else { return nil }
            records.append(object)
        }
        return records
    }

    @Test func aWorkerLogsJSONLinesWithTimestampLevelMessageAndMetadata() throws {
        let directory = try TemporaryDirectory()
        let corpus = try directory.file("in.txt", Array("a b c a\nb a\n".utf8))
        let worker = try TestWorker(
            cookie: "logs",
            arguments: ["worker", "--listen", "127.0.0.1:0", "--threads", "1", "--log-format", "json"])
        let counted = try CommandRunner.run(
            ["count", "--workers", worker.address, "--cookie", "logs", "--no-master-work", corpus], timeout: 60)
        #expect(counted.status == 0 && counted.stdoutText == "a 3\nb 2\nc 1\n", "\(counted.stderr)")
        let stderr = worker.stop()
        let records = Self.records(stderr)
        #expect(records != nil, "a line is not a JSON log record: \(stderr)")
        let all = records ?? []
        // Connected, disconnected, the signal and the drain: one event a line.
        #expect(all.count >= 4, "\(stderr)")
        let connected = all.first { ($0["message"] as? String)?.hasPrefix("master ") == true }
        let metadata = connected?["metadata"] as? [String: String] ?? [:]
        #expect(connected?["level"] as? String == "info" && connected?["label"] as? String == "elasticflow.worker")
        #expect(metadata["node"]?.hasPrefix("worker@") == true && metadata["peer"]?.hasPrefix("127.0.0.1:") == true)
        #expect(metadata["master"] != nil, "\(stderr)")
        #expect(
            all.contains {
                $0["level"] as? String == "notice" && ($0["message"] as? String)?.contains("signal") == true
            })
    }

    @Test func logLevelWarningHidesInfoButNotWarnings() throws {
        let worker = try TestWorker(
            cookie: "right",
            arguments: ["worker", "--listen", "127.0.0.1:0", "--threads", "1", "--log-level", "warning"])
        let directory = try TemporaryDirectory()
        let corpus = try directory.file("in.txt", Array("x y\n".utf8))
        // A master with the right cookie (info lines only), then one with a wrong one (a warning).
        let right = try CommandRunner.run(["count", "--workers", worker.address, "--cookie", "right", corpus])
        #expect(right.status == 0, "\(right.stderr)")
        let wrong = try CommandRunner.run(["count", "--workers", worker.address, "--cookie", "wrong", corpus])
        #expect(wrong.status != 0)
        let stderr = worker.stop()
        let lines = Self.lines(stderr)
        #expect(
            !lines.isEmpty && lines.allSatisfy { $0.contains(" warning elasticflow.worker: refused ") }, "\(stderr)")
        #expect(lines.allSatisfy { Self.isTimestamp($0.prefix(24)) }, "\(stderr)")
        #expect(!stderr.contains("connected") && !stderr.contains("signal"), "\(stderr)")
    }

    @Test(arguments: [
        ["worker", "--listen", "127.0.0.1:0"], ["count", "-"], ["run", "--config", "/nonexistent", "x"],
        ["resume", "--step-data", "/nonexistent"], ["example"],
    ])
    func aBadLogLevelIsOneLineNamingTheValidOnes(_ command: [String]) throws {
        let result = try CommandRunner.run(command + ["--log-level", "loud"], timeout: 30)
        #expect(result.status != 0 && !result.signalled, "\(result.stderr)")
        let lines = Self.lines(result.stderr)
        #expect(lines.count == 1, "\(result.stderr)")
        let expected =
            "invalid --log-level 'loud': expected one of trace, debug, info, notice, warning, error, critical"
        #expect(result.stderr.contains(expected), "\(result.stderr)")
        let format = try CommandRunner.run(command + ["--log-format", "xml"], timeout: 30)
        #expect(format.status != 0 && format.stderr.contains("invalid --log-format 'xml': expected text or json"))
    }

    /// `run --verbose --step-data DIR` prints the per-event log its help promises (every parcel's
    /// events, in order, each a timestamped line), then the summary.
    @Test func runVerboseWithStepDataLogsEveryEvent() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 9)
        let text = generator.generate(byteCount: 200_000)
        let corpus = try directory.file("t.txt", text)
        let config = try directory.file("cluster.json", Array(#"{"nodes": []}"#.utf8))
        let result = try CommandRunner.run(
            [
                "run", "--config", config, "--parcel-size", "64KiB", "--verbose", "--step-data",
                directory.path("steps"), corpus,
            ], timeout: 60)
        #expect(
            result.status == 0 && Bytes(result.stdout) == Bytes(Reference.text(text, lowercase: false)),
            "\(result.stderr)")
        let events = Self.lines(result.stderr).filter { $0.contains(" elasticflow.events: [") }
        for kind in ["distributed ", "sent ", "received ", "aggregated ", "task-complete "] {
            // Four 64 KiB parcels at least: every one with each of its events.
            let count = events.filter { $0.contains("s] \(kind)") }.count
            #expect(count >= 3, "\(kind): \(result.stderr)")
        }
        #expect(events.allSatisfy { Self.isTimestamp($0.prefix(24)) && $0.contains(" step=1") }, "\(result.stderr)")
        #expect(events.last?.contains("step 1 completed") == true, "\(result.stderr)")
        #expect(result.stderr.contains("step 1 (wordcount): "), "no summary: \(result.stderr)")
    }

    /// The master's own log (`--log-level debug`): its step updates with `step` metadata, in JSON.
    @Test func theMastersDebugLogCarriesTheStep() throws {
        let worker = try TestWorker(cookie: "m")
        let directory = try TemporaryDirectory()
        let corpus = try directory.file("in.txt", Array("p q p\n".utf8))
        let result = try CommandRunner.run(
            [
                "count", "--workers", worker.address, "--cookie", "m", "--log-level", "debug", "--log-format", "json",
                "--summary", corpus,
            ])
        #expect(result.status == 0 && result.stdoutText == "p 2\nq 1\n", "\(result.stderr)")
        let records = Self.records(result.stderr)
        #expect(records != nil, "\(result.stderr)")
        let master = (records ?? []).filter { $0["label"] as? String == "elasticflow.master" }
        let states = master.compactMap { ($0["metadata"] as? [String: String])?["state"] }
        #expect(states.first == "running" && states.last == "completed", "\(result.stderr)")
        #expect(master.allSatisfy { ($0["metadata"] as? [String: String])?["step"] == "1" })
        // The summary is a record too (its lines in the message), so every line parses.
        let summary = (records ?? []).first { ($0["message"] as? String)?.contains(" receipts closed") == true }
        #expect(summary?["level"] as? String == "notice", "\(result.stderr)")
        #expect((summary?["message"] as? String)?.contains("\n  parcels by node: ") == true, "\(result.stderr)")
        // And so is the error a failing command ends with.
        let failed = try CommandRunner.run(
            ["count", "--workers", "127.0.0.1:1", "--cookie", "m", "--log-format", "json", corpus], timeout: 60)
        let error = Self.records(failed.stderr)
        #expect(failed.status != 0 && error?.count == 1, "\(failed.stderr)")
        #expect(error?.first?["level"] as? String == "error" && failed.stderr.contains("cannot reach worker"))
        // An error found while parsing, before any command set up logging, is a record too.
        for spelling in [["--log-format", "json"], ["--log-format=json"]] {
            let unparsed = try CommandRunner.run(["count", "--workers", "nohost"] + spelling + [corpus], timeout: 30)
            let record = Self.records(unparsed.stderr)
            #expect(unparsed.status != 0 && record?.count == 1, "\(unparsed.stderr)")
            #expect(record?.first?["level"] as? String == "error", "\(unparsed.stderr)")
            #expect((record?.first?["message"] as? String)?.contains("HOST:PORT") == true, "\(unparsed.stderr)")
        }
        // At info (the default) the same run logs nothing on the master's side.
        let quiet = try CommandRunner.run(["count", "--workers", worker.address, "--cookie", "m", corpus])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty, "\(quiet.stderr)")
    }

    /// A `Worker` in this process logs through the `Logger` it is given, with its name as `node`.
    @Test func aWorkerLogsThroughTheLoggerItIsGiven() async throws {
        let store = RecordingLogHandler.Store()
        var configuration = WorkerConfiguration(
            listen: NodeAddress(host: "127.0.0.1", port: 0), cookie: try Cookie("in-process"), name: "w-log")
        configuration.threads = 1
        let worker = try Worker(configuration: configuration, logger: RecordingLogHandler.logger(store))
        try worker.start()
        let directory = try TemporaryDirectory()
        let corpus = try directory.file("in.txt", Array("k k\n".utf8))
        let counted = try CommandRunner.run(
            ["count", "--workers", worker.address.description, "--cookie", "in-process", "--no-master-work", corpus])
        worker.shutdown()
        worker.wait()
        #expect(counted.status == 0 && counted.stdoutText == "k 2\n", "\(counted.stderr)")
        let entries = store.all
        let connected = entries.first { $0.message.hasSuffix(") connected") }
        #expect(connected?.level == .info && connected?.metadata["node"] == "w-log", "\(entries.map(\.message))")
        #expect(entries.contains { $0.level == .notice && $0.message.hasPrefix("shutting down") })
        #expect(entries.allSatisfy { $0.metadata["node"] == "w-log" })
    }

    @Test func aWorkerOnPortZeroIsNamedForThePortItBound() throws {
        let cookie = try Cookie("names")
        let worker = try AsyncAPITests.inProcessWorker(cookie: cookie)
        #expect(worker.name == "worker@127.0.0.1:0")
        try worker.start()
        defer { worker.shutdown() }
        #expect(worker.address.port != 0 && worker.name == "worker@\(worker.address)")
        // A name given is kept as given.
        let named = try Worker(
            configuration: WorkerConfiguration(
                listen: try NodeAddress(parsing: "127.0.0.1:0"), cookie: cookie, name: "steady"))
        try named.start()
        defer { named.shutdown() }
        #expect(named.name == "steady")
    }
}

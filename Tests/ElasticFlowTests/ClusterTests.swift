import Foundation
import Testing

@testable import ElasticFlow

/// Master and workers as real processes on loopback, compared byte for byte with the single-node
/// count and the naive reference.
@Suite(.serialized) struct ClusterTests {
    /// A multi-parcel corpus with a word longer than a parcel and a last line without newline.
    static func corpus() -> [UInt8] {
        var generator = CorpusGenerator(seed: 77)
        var text = generator.generate(byteCount: 3_000_000)
        text +=
            Array("\n".utf8) + [UInt8](repeating: UInt8(ascii: "Q"), count: 200_000)
            + Array(" after the long word\n".utf8)
        text += generator.generate(byteCount: 500_000)
        text += Array("no newline at the end".utf8)
        return text
    }

    @Test(arguments: ["none", "lz4", "zstd", "zstd:6", "auto"])
    func distributedCountEqualsSingleNodeForEachCodec(_ compression: String) throws {
        let directory = try TemporaryDirectory()
        let text = Self.corpus()
        let path = try directory.file("corpus.txt", text)
        let workers = [try TestWorker(cookie: "secret"), try TestWorker(cookie: "secret")]
        let single = try CommandRunner.run(["count", "--lowercase", path])
        #expect(single.status == 0)
        #expect(Bytes(single.stdout) == Bytes(Reference.text(text, lowercase: true)))
        let distributed = try CommandRunner.run(
            [
                "count", "--lowercase", "--workers", workers.map(\.address).joined(separator: ","), "--compression",
                compression, "--parcel-size", "64KiB", path,
            ], environment: ["ELASTICFLOW_COOKIE": "secret"])
        #expect(distributed.status == 0, "\(distributed.stderr)")
        #expect(Bytes(distributed.stdout) == Bytes(single.stdout))
    }

    @Test func rawBytesAndStandardInputCrossTheClusterUntouched() throws {
        // NUL, bytes over 0x7F, invalid UTF-8 and every whitespace kind, read from standard input.
        var random = RandomText(state: 99)
        let bytes = random.bytes(400_000)
        let workers = [try TestWorker(cookie: "b"), try TestWorker(cookie: "b")]
        for format in ["text", "tsv", "json"] {
            let single = try CommandRunner.run(["count", "--format", format, "-"], stdin: bytes)
            let distributed = try CommandRunner.run(
                [
                    "count", "--format", format, "--workers", workers.map(\.address).joined(separator: ","),
                    "--cookie", "b", "--parcel-size", "8KiB", "--no-master-work", "-",
                ], stdin: bytes)
            #expect(distributed.status == 0, "\(distributed.stderr)")
            #expect(Bytes(distributed.stdout) == Bytes(single.stdout), "\(format)")
        }
        let text = try CommandRunner.run(["count", "-"], stdin: bytes)
        #expect(Bytes(text.stdout) == Bytes(Reference.text(bytes, lowercase: false)))
    }

    @Test func theMasterCanLeaveAllWorkToTheWorkers() throws {
        let directory = try TemporaryDirectory()
        let text = Self.corpus()
        let path = try directory.file("corpus.txt", text)
        let workers = [try TestWorker(cookie: "s"), try TestWorker(cookie: "s")]
        let distributed = try CommandRunner.run(
            [
                "count", "--workers", workers.map(\.address).joined(separator: ","), "--no-master-work",
                "--parcel-size", "100KiB", "--cookie", "s", path,
            ])
        #expect(distributed.status == 0, "\(distributed.stderr)")
        #expect(Bytes(distributed.stdout) == Bytes(Reference.text(text, lowercase: false)))
    }

    @Test func aWrongCookieIsRefusedOnBothSidesAndTheWorkerKeepsServing() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("small.txt", Array("a b a\n".utf8))
        let worker = try TestWorker(cookie: "right")
        let refused = try CommandRunner.run(["count", "--workers", worker.address, "--cookie", "wrong", path])
        #expect(refused.status != 0)
        #expect(refused.stdout.isEmpty)
        #expect(refused.stderr.contains("authentication"), "\(refused.stderr)")
        #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        let accepted = try CommandRunner.run(["count", "--workers", worker.address, "--cookie", "right", path])
        #expect(accepted.status == 0, "\(accepted.stderr)")
        #expect(accepted.stdoutText == "a 2\nb 1\n")
        let log = worker.stop()
        #expect(log.contains("refused"), "\(log)")
        #expect(log.contains("connected"), "\(log)")
    }

    @Test func anUnreachableWorkerFailsWithAClearMessage() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("small.txt", Array("a\n".utf8))
        let port = try freePort()
        let result = try CommandRunner.run(["count", "--workers", "127.0.0.1:\(port)", "--cookie", "c", path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("cannot reach worker 127.0.0.1:\(port)"), "\(result.stderr)")
        #expect(result.stderr.contains("refused"), "\(result.stderr)")
    }

    /// Workers named by host name: the name is resolved off the event loop (`HostResolver`), then
    /// connected to as a literal; the result is exact. A name that does not resolve fails the step
    /// with one clear line, and with `--min-workers` the step goes on without it.
    @Test func workersNamedByHostNameAreResolvedOffTheLoop() throws {
        #expect(HostResolver.isLiteral("127.0.0.1") && HostResolver.isLiteral("::1"))
        #expect(!HostResolver.isLiteral("localhost") && !HostResolver.isLiteral(""))
        #expect(HostResolver.lookup("no-such-host.invalid") == nil)
        #expect(HostResolver.lookup("127.0.0.1") == "127.0.0.1")
        let directory = try TemporaryDirectory()
        let text = Self.corpus()
        let path = try directory.file("corpus.txt", text)
        let worker = try TestWorker(cookie: "n")
        let port = worker.address.split(separator: ":").last!
        let unresolvable = try CommandRunner.run(
            ["count", "--workers", "no-such-host.invalid:\(port)", "--cookie", "n", "--no-master-work", path])
        #expect(unresolvable.status != 0)
        #expect(
            unresolvable.stderr == "elasticflow: error: cannot reach worker no-such-host.invalid:\(port): "
                + "cannot connect to no-such-host.invalid:\(port): address does not resolve\n",
            "\(unresolvable.stderr)")
        // `localhost` is 127.0.0.1 in the usual /etc/hosts; the worker listens there only.
        guard HostResolver.lookup("localhost") == "127.0.0.1" else {
            print("localhost does not resolve to 127.0.0.1 first here: the named-worker run is skipped")
            return
        }
        let named = try CommandRunner.run(
            [
                "count", "--workers", "localhost:\(port),no-such-host.invalid:\(port)", "--min-workers", "1",
                "--cookie", "n", "--no-master-work", "--parcel-size", "100KiB", path,
            ])
        #expect(named.status == 0, "\(named.stderr)")
        #expect(Bytes(named.stdout) == Bytes(Reference.text(text, lowercase: false)))
    }

    @Test func badClusterFlagsAreRejected() throws {
        for (arguments, message) in [
            (["count", "--workers", "nohost", "-"], "HOST:PORT"),
            (["count", "--workers", "127.0.0.1:99999", "-"], "HOST:PORT"),
            (["count", "--workers", "127.0.0.1:1", "--compression", "gzip", "--cookie", "x", "-"], "compression"),
            (["count", "--compression", "lz4", "-"], "need --workers"),
            (["count", "--workers", "127.0.0.1:1", "-"], "cookie"),
            (["count", "--workers", "127.0.0.1:7,127.0.0.1:7", "--cookie", "x", "-"], "listed twice"),
        ] {
            let result = try CommandRunner.run(arguments, environment: [:])
            #expect(result.status != 0, "\(arguments)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
    }

    @Test func customTasksWithCustomAggregatorsRunAcrossProcesses() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 5)
        var text = generator.generate(byteCount: 1_000_000)
        text += Array(
            "this is the longest line of them all because it goes on and on and on and on and on and on\n".utf8)
        text += generator.generate(byteCount: 300_000)
        let path = try directory.file("text.txt", text)
        let workers = [try TestWorker(cookie: "k"), try TestWorker(cookie: "k")]
        let cookieFile = try directory.file("cookie", Array("k\n".utf8))
        let config = """
            {"nodes": [{"name": "m", "address": "127.0.0.1:0", "role": "master"},
                       {"name": "w1", "address": "\(workers[0].address)", "role": "worker"},
                       {"name": "w2", "address": "\(workers[1].address)", "role": "worker"}],
             "cookieFile": "cookie", "compression": "zstd:3", "parcelSize": "32KiB", "inFlight": 2,
             "masterProcesses": false}
            """
        _ = cookieFile
        let configPath = try directory.file("cluster.json", Array(config.utf8))
        let longest = try CommandRunner.run(["run", "--config", configPath, "--task", "longest-line", path])
        #expect(longest.status == 0, "\(longest.stderr)")
        let lines = text.split(separator: 0x0A, omittingEmptySubsequences: false).map { Array($0) }
        let expected = lines.max { a, b in a.count != b.count ? a.count < b.count : b.lexicographicallyPrecedes(a) }!
        #expect(longest.stdoutText.contains(String(decoding: expected, as: UTF8.self)), "\(longest.stdoutText)")

        let histogram = try CommandRunner.run(["run", "--config", configPath, "--task", "line-lengths", path])
        #expect(histogram.status == 0, "\(histogram.stderr)")
        let local = try LocalTask.run(named: "line-lengths", text: text)
        let sameHistogram = histogram.stdoutText == local.description + "\n"
        #expect(sameHistogram, "the histogram differs from the local run's: \(histogram.stdoutText.prefix(300))")

        let words = try CommandRunner.run(["run", "--config", configPath, "--lowercase", path])
        #expect(words.status == 0, "\(words.stderr)")
        let exact = words.stdout == Reference.text(text, lowercase: true)
        #expect(exact, "the word count differs from the reference (\(words.stdout.count) bytes)")
    }

    @Test func interceptorEventsArriveInOrderForEveryReceipt() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 8)
        let text = generator.generate(byteCount: 1_500_000)
        let path = try directory.file("text.txt", text)
        let workers = [try TestWorker(cookie: "e"), try TestWorker(cookie: "e")]
        var configuration = ClusterConfiguration(
            workers: try workers.map { try NodeAddress(parsing: $0.address) }, cookie: try Cookie("e"))
        configuration.parcelSize = 50_000
        let master = Master(configuration: configuration)
        let recorder = EventRecorder()
        master.add(recorder)
        let report = try master.run(task: "wordcount", sources: [.file(path)])
        guard case .wordCount(let counter) = report.output else {
            Issue.record("no word count")
            return
        }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        let events = recorder.events
        var byReceipt: [UInt64: [String]] = [:]
        for event in events {
            guard let receipt = event.receipt else { continue }
            let kind = String(event.description.prefix { $0 != " " })
            byReceipt[receipt.sequence, default: []].append(kind)
        }
        #expect(byReceipt.count == report.summary.parcels)
        #expect(report.summary.parcels > 20)
        for (sequence, kinds) in byReceipt {
            #expect(
                kinds == ["distributed", "sent", "received", "aggregated", "task-complete"],
                "receipt \(sequence): \(kinds)")
        }
        #expect(report.summary.parcelsByNode.count >= 2)
        #expect(events.first.map { if case .stepUpdate = $0 { true } else { false } } == true)
        #expect(events.last.map { if case .stepUpdate(_, .completed, _) = $0 { true } else { false } } == true)
        // Receipts print and parse back.
        for event in events {
            if let receipt = event.receipt { #expect(Receipt(receipt.description) == receipt) }
        }
    }
}

/// Collects events in order (called under the master's lock, so in event order).
final class EventRecorder: Interceptor, @unchecked Sendable {
    // Guarded by lock.
    private let lock = NSLock()
    private var recorded: [FlowEvent] = []
    var events: [FlowEvent] { lock.withLock { recorded } }
    func record(_ event: FlowEvent) { lock.withLock { recorded.append(event) } }
    func distributed(_ receipt: Receipt, to node: String) { record(.distributed(receipt, node: node)) }
    func sent(_ receipt: Receipt, to node: String, bytes: Int) { record(.sent(receipt, node: node, bytes: bytes)) }
    func received(_ receipt: Receipt, from node: String, bytes: Int) {
        record(.received(receipt, node: node, bytes: bytes))
    }
    func aggregated(_ receipt: Receipt) { record(.aggregated(receipt)) }
    func taskCompleted(_ receipt: Receipt, on node: String, seconds: Double) {
        record(.taskComplete(receipt, node: node, seconds: seconds))
    }
    func stepUpdated(step: UInt32, state: StepUpdateState, detail: String) {
        record(.stepUpdate(step: step, state: state, detail: detail))
    }
}

/// Runs a registered task over a whole text on this thread, as one parcel.
enum LocalTask {
    static func run(named name: String, text: [UInt8]) throws -> FlowValue {
        let task = try TaskRegistry.standard.task(named: name)
        let aggregation = try task.makeAggregation(options: TaskOptions())
        let result = try text.withUnsafeBytes { try task.process(ParcelBytes($0), options: TaskOptions()) }
        try aggregation.absorb(result)
        guard case .value(let value) = try aggregation.output() else { throw TestWorkerError.exited }
        return value
    }
}

import Foundation
import Testing

@testable import ElasticFlow

/// The master and its workers as separate hosts (network namespaces joined by veth pairs), one
/// worker's link cut in the middle of a step. Unlike a killed process, a cut link sends nothing:
/// no RST, no FIN, the worker just goes silent, and only the heartbeat time-out can tell.
/// Needs root and iproute2 (as CI has); skipped, saying why, elsewhere.
struct NetworkNamespaceTests {
    static let skipReason = Comment(
        rawValue: "needs network namespaces: \(NetworkNamespaces.unavailableReason ?? "available")")

    /// One event of `run --verbose --log-format json`: its message is `[SECONDS s] EVENT`.
    struct LogLine {
        let seconds: Double
        let event: String
        let arrival: Double
    }

    static func parse(_ lines: [ChildProcess.Line]) -> [LogLine] {
        lines.compactMap { line in
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.text.utf8)) as? [String: Any],
                record["label"] as? String == "elasticflow.events", let text = record["message"] as? String
            else { return nil }
            guard text.hasPrefix("["), let close = text.firstIndex(of: "]"), text[..<close].hasSuffix("s"),
                let seconds = Double(text[text.index(after: text.startIndex)..<text.index(before: close)])
            else { return nil }
            let event = String(text[text.index(after: close)...].dropFirst())
            return LogLine(seconds: seconds, event: event, arrival: line.arrival)
        }
    }

    /// The lines of the step summary, the `elasticflow` record whose message holds "receipts closed".
    static func summaryLines(_ lines: [ChildProcess.Line]) -> [String] {
        for line in lines {
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.text.utf8)) as? [String: Any],
                record["label"] as? String == "elasticflow", let text = record["message"] as? String,
                text.contains("receipts closed")
            else { continue }
            return text.split(separator: "\n").map(String.init)
        }
        return []
    }

    /// The number just before `label` in a summary line ("…, 7 retries, …").
    static func number(before label: String, in line: String) -> Int? {
        guard let range = line.range(of: " \(label)") else { return nil }
        return Int(line[..<range.lowerBound].split(whereSeparator: { $0 == " " || $0 == "/" }).last ?? "")
    }

    @Test(.enabled(if: NetworkNamespaces.available, skipReason))
    func aWorkerWhoseLinkIsCutMidStepLosesNothing() throws {
        let lan = try NetworkNamespaces(workers: 2)
        defer {
            let leftovers = lan.tearDown()
            #expect(leftovers.isEmpty, "namespaces left behind: \(leftovers)")
        }
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 3)
        let text = generator.generate(byteCount: 2 << 20)
        let corpus = try directory.file("corpus.txt", text)
        let cookie = try directory.file("cookie", Array("netns-\(UUID().uuidString)".utf8))
        let executable = CommandRunner.executable.path
        let port = 7701
        let heartbeatTimeout = 1.0

        // Two workers (stopped by tearDown), each listening on its own host's address.
        for host in lan.workers {
            let worker = try lan.start(
                in: host.namespace, executable,
                ["worker", "--listen", "\(host.address):\(port)", "--threads", "2", "--cookie-file", cookie])
            let listening = "listening on \(host.address):\(port)"
            guard worker.wait(timeout: 10, until: { output, _ in output.contains { $0.text == listening } }) else {
                Issue.record("the worker in \(host.namespace) did not start: \(worker.stderrText)")
                return
            }
        }

        // The master, in its own namespace, reaches them only over the veth links.
        let cluster = ClusterFile(
            nodes: lan.workers.enumerated().map { index, host in
                ClusterFile.Node(name: "w\(index + 1)", address: "\(host.address):\(port)", role: "worker")
            },
            cookieFile: cookie, compression: nil, parcelSize: "16KiB", inFlight: 2, masterProcesses: false,
            heartbeatInterval: 0.2, heartbeatTimeout: heartbeatTimeout, maxAttempts: nil, chaos: nil, chaosSeed: nil)
        let config = try directory.file("cluster.json", Array(try JSONEncoder().encode(cluster)))
        let master = try lan.start(
            in: lan.master, executable,
            [
                "run", "--config", config, "--task", "slow-wordcount", "--param", "delay-ms=40", "--verbose",
                "--log-format", "json",
                corpus,
            ])

        // Mid-step: once some parcels are aggregated (about 128 in all), cut the first worker's link.
        let cutAfter = 40
        let underWay = master.wait(timeout: 20) { _, errors in
            errors.lazy.filter { $0.text.contains("] aggregated ") }.count >= cutAfter
        }
        guard underWay else {
            Issue.record("the step never got under way: \(master.stderrText.suffix(2000))")
            return
        }
        let victim = lan.workers[0]
        try lan.cut(victim)
        let cutAt = monotonicNow()

        guard master.waitForExit(timeout: 25) else {
            Issue.record("the step did not finish within 25 s of the cut: \(master.stderrText.suffix(3000))")
            return
        }
        let stderr = master.stderrText
        #expect(master.status == 0, "\(stderr.suffix(3000))")
        #expect(
            Bytes(master.stdout) == Bytes(Reference.text(text, lowercase: false)),
            "the output differs from the reference")

        // The cut worker was presumed dead, and its parcels went to the other.
        let log = Self.parse(master.stderrLines)
        let victimName = "\(victim.address):\(port)"
        let nodeDown = log.first { $0.event.contains("node-down: \(victimName)") }
        #expect(nodeDown != nil, "no node-down for \(victimName): \(stderr.suffix(3000))")
        #expect(!log.contains { $0.event.contains("node-down") && !$0.event.contains(victimName) }, "\(stderr)")
        #expect(log.contains { $0.event.hasSuffix("completed-with-retries") }, "\(stderr.suffix(3000))")
        // The summary is a JSON record too (--log-format json): its lines are in the message.
        let lines = Self.summaryLines(master.stderrLines)
        let summary = lines.first { $0.hasPrefix("step ") && $0.contains("receipts closed") } ?? ""
        let retries = Self.number(before: "retries", in: summary)
        #expect((retries ?? 0) >= 1, "the cut worker held parcels that went elsewhere: \(summary)")
        if let range = summary.range(of: " receipts closed") {
            let counts = summary[..<range.lowerBound].split(separator: " ").last?.split(separator: "/") ?? []
            #expect(counts.count == 2 && counts[0] == counts[1], "\(summary)")
        }
        let byNode = lines.first { $0.contains("parcels by node:") } ?? ""
        #expect(byNode.contains("\(lan.workers[1].address):\(port): "), "\(byNode)")

        // Timings, for docs/reliability.md. The log's clock starts with the master's step; it is
        // mapped onto ours by the smallest (arrival - logged) gap, since a line arrives after it
        // is logged.
        guard let nodeDown, let offset = log.map({ $0.arrival - $0.seconds }).min() else { return }
        let cutInLog = cutAt - offset
        let detection = nodeDown.seconds - cutInLog
        let lastAggregated = log.last { $0.event.hasPrefix("aggregated ") }?.seconds ?? nodeDown.seconds
        let total = (master.exitTime ?? monotonicNow()) - master.started
        let stepLine = lines.first { $0.contains(" MB in ") } ?? ""
        print(
            """
            network namespaces: \(lan.workers.count) workers on veth links; \(victimName)'s link cut at \
            \(format3(cutInLog)) s into the step (after \(cutAfter) of the parcels were aggregated)
              cut -> node-down: \(format3(detection)) s (heartbeat time-out \(heartbeatTimeout) s, interval 0.2 s): \
            \(nodeDown.event)
              node-down -> last parcel aggregated: \(format3(max(0, lastAggregated - nodeDown.seconds))) s
              \(summary)
              \(stepLine.trimmingCharacters(in: .whitespaces))
              \(byNode.trimmingCharacters(in: .whitespaces))
              master process, start to exit: \(format3(total)) s
            """)
        #expect(detection >= heartbeatTimeout - 0.05, "presumed dead before the heartbeat time-out")
        #expect(detection < heartbeatTimeout + 2, "took too long to notice the silence")
    }

    /// Shared-input mode with every node a separate host that sees the corpus at the same path
    /// through its own view of the filesystem: each worker runs in a mount namespace of its own
    /// where that path is its own copy. The master only stats the file and sends receipts.
    @Test(
        .enabled(
            if: NetworkNamespaces.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"),
            skipReason))
    func sharedInputWorkersReadTheirOwnCopiesOverVethLinks() throws {
        let lan = try NetworkNamespaces(workers: 2)
        defer {
            let leftovers = lan.tearDown()
            #expect(leftovers.isEmpty, "namespaces left behind: \(leftovers)")
        }
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 77)
        let text = generator.generate(byteCount: 3 << 20)
        // The path every node uses; each worker mounts its own copy over it.
        let shared = directory.path("shared")
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        let corpus = shared + "/corpus.txt"
        _ = try directory.file("shared/corpus.txt", text)
        let cookie = try directory.file("cookie", Array("netns-\(UUID().uuidString)".utf8))
        let executable = CommandRunner.executable.path
        let port = 7711

        func startWorkers(copies: [[UInt8]]) throws -> [ChildProcess] {
            var started: [ChildProcess] = []
            for (index, host) in lan.workers.enumerated() {
                let view = directory.path("view-\(index)-\(started.count)-\(UUID().uuidString.prefix(6))")
                try FileManager.default.createDirectory(atPath: view, withIntermediateDirectories: true)
                try Data(copies[index]).write(to: URL(fileURLWithPath: view + "/corpus.txt"))
                let command =
                    "mount --bind '\(view)' '\(shared)' && exec '\(executable)' worker --listen \(host.address):\(port) "
                    + "--threads 2 --cookie-file '\(cookie)'"
                let worker = try lan.start(
                    in: host.namespace, "/usr/bin/unshare",
                    ["--mount", "--propagation", "private", "sh", "-c", command])
                let listening = "listening on \(host.address):\(port)"
                guard worker.wait(timeout: 10, until: { output, _ in output.contains { $0.text == listening } }) else {
                    throw NetworkNamespaceError.unavailable("worker in \(host.namespace): \(worker.stderrText)")
                }
                started.append(worker)
            }
            return started
        }

        func count() throws -> ChildProcess {
            let addresses = lan.workers.map { "\($0.address):\(port)" }.joined(separator: ",")
            let master = try lan.start(
                in: lan.master, executable,
                [
                    "count", "--shared-input", "--workers", addresses, "--cookie-file", cookie, "--no-master-work",
                    "--parcel-size", "64KiB", "--summary", corpus,
                ])
            guard master.waitForExit(timeout: 60) else {
                throw NetworkNamespaceError.unavailable("the master did not finish: \(master.stderrText.suffix(2000))")
            }
            return master
        }

        // Identical copies: the exact result, and no parcel byte crossed the links.
        var workers = try startWorkers(copies: [text, text])
        let master = try count()
        #expect(master.status == 0, "\(master.stderrText.suffix(3000))")
        #expect(
            Bytes(master.stdout) == Bytes(Reference.text(text, lowercase: false)),
            "the output differs from the reference")
        let summary = master.stderrText
        #expect(summary.contains("shared input: receipts only on the wire"), "\(summary)")
        let byNode = summary.split(separator: "\n").first { $0.contains("parcels by node:") } ?? ""
        for host in lan.workers { #expect(byNode.contains("\(host.address):\(port): "), "\(byNode)") }

        // One worker's copy differs in size: it refuses every split (answering why), the other
        // does the work, and the result is still exact.
        let longer = text + Array("one more line\n".utf8)
        for worker in workers { worker.stop(grace: 2) }
        workers = try startWorkers(copies: [text, longer])
        let oneOff = try count()
        #expect(oneOff.status == 0, "\(oneOff.stderrText.suffix(3000))")
        #expect(Bytes(oneOff.stdout) == Bytes(Reference.text(text, lowercase: false)))
        let oneOffByNode = oneOff.stderrText.split(separator: "\n").first { $0.contains("parcels by node:") } ?? ""
        #expect(!oneOffByNode.contains("\(lan.workers[1].address):\(port): "), "\(oneOffByNode)")
        #expect(!oneOff.stderrText.contains(" 0 task errors"), "\(oneOff.stderrText.suffix(2000))")

        // No worker's copy matches the master's: a clear failure naming the file, nothing printed.
        for worker in workers { worker.stop(grace: 2) }
        workers = try startWorkers(copies: [longer, longer])
        let failed = try count()
        #expect(failed.status != 0)
        #expect(failed.stdout.isEmpty)
        #expect(failed.stderrText.contains(corpus), "\(failed.stderrText.suffix(2000))")
        for worker in workers { worker.stop(grace: 2) }
    }
}

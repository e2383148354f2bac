import Foundation
import Testing

@testable import ElasticFlow

/// `--compression auto` (docs/compression.md): its parsing, the model's choices on known inputs,
/// and whole steps over veth links shaped with `tc tbf` — exact results, decisions reported, random
/// bytes sent uncompressed, and a link whose speed changes mid-step changing the choice.
struct AutoCompressionTests {
    static let skipReason = Comment(
        rawValue: "needs network namespaces: \(NetworkNamespaces.unavailableReason ?? "available")")

    /// A cluster file of one worker (`run` needs one; flags override it).
    static func clusterFile(in directory: TemporaryDirectory, worker: String, cookieFile: String) throws -> String {
        var file = ClusterFile(nodes: [ClusterFile.Node(name: "w1", address: worker, role: "worker")])
        file.cookieFile = cookieFile
        file.masterProcesses = false
        return try directory.file("cluster.json", Array(try JSONEncoder().encode(file)))
    }

    @Test func autoParsesAndPrintsAsItself() throws {
        #expect(try Compression(parsing: "auto") == .auto)
        #expect(try Compression(parsing: "AUTO").description == "auto")
        #expect(throws: ElasticFlowError.self) { try Compression(parsing: "auto:3") }
        var file = ClusterFile(nodes: [])
        file.compression = "auto"
        #expect(try file.configuration(cookie: try Cookie("secret")).compression == .auto)
        // A fixed codec is never asked to compress "auto".
        #expect(throws: ElasticFlowError.self) { try Codec().compress([1, 2, 3], with: .auto) }
    }

    /// The model on one sample of text: a slow link takes zstd, a fast one nothing or lz4, and
    /// random bytes nothing whatever the link.
    @Test func theModelFollowsTheLinkAndRefusesRandomBytes() throws {
        var generator = CorpusGenerator(seed: 12)
        let text = generator.generate(byteCount: 256 << 10)
        let codec = try Codec()
        func choice(_ bytes: [UInt8], delivered: Int64, in seconds: Double) -> Compression {
            var link = AutoCompression.LinkState()
            // The sender-limited bound counts only when above the link's own rate.
            let now = monotonicSeconds()
            let own = Double(delivered) / seconds
            for index in 0..<AutoCompression.minimumReadings {
                let limited = index % 2 == 1
                link.samples.append((now + Double(index) * 0.02, limited ? own / 2 : own, limited))
            }
            let rate = AutoCompression.throughput(link)
            #expect(rate == Double(delivered) / seconds)
            let auto = AutoCompression(direction: .parcels, linkRate: rate)
            return bytes.withUnsafeBytes { raw in auto.choose(for: "w", sequence: 1, bytes: raw, codec: codec).0 }
        }
        let slow = choice(text, delivered: 1 << 20, in: 1.0)  // 1 MB/s
        #expect(slow.description.hasPrefix("zstd"), "slow link: \(slow)")
        let fast = choice(text, delivered: 10 << 30, in: 1.0)  // 10 GB/s
        #expect(fast == .none || fast.description.hasPrefix("lz4"), "fast link: \(fast)")
        var random = SystemRandomNumberGenerator()
        let noise = (0..<(256 << 10)).map { _ in UInt8.random(in: 0...255, using: &random) }
        #expect(choice(noise, delivered: 1 << 20, in: 1.0) == .none)
    }

    /// The probe at a step's start (docs/compression.md), on a clock of the test's own: a probe
    /// that reads slow is the link's estimate at once; one that reads faster than a shaper's burst
    /// could hide asks for a bigger one, and parcels wait for it; the bigger one is never asked of
    /// a link whose parcels are smaller; a plain or stray echo changes nothing.
    @Test func aFastProbeIsGrownOnceAndASlowOneIsTakenAsIs() {
        let small = UInt64(AutoCompression.probeBytes)
        let grown = AutoCompression.grownProbeBytes
        let connection = ConnectionID(rawValue: 7)
        // 256 KiB in 20 ms after the lead's echo: 13 MB/s, taken as the estimate, no second probe.
        let slow = AutoCompression(direction: .parcels)
        slow.probeSent(to: "w", connection: connection, at: 100)
        #expect(slow.probeAnswered(by: "w", padding: 1, largest: 4 << 20, at: 100.001) == nil)
        #expect(slow.probeAnswered(by: "w", padding: 999, largest: 4 << 20, at: 100.002) == nil)
        #expect(slow.estimate(for: "w") == nil, "a stray echo is no reading")
        #expect(slow.probeAnswered(by: "w", padding: small, largest: 4 << 20, at: 100.021) == nil)
        #expect(abs((slow.estimate(for: "w") ?? 0) - Double(small) / 0.020) < 1)
        slow.awaitProbe(for: "w")  // answered: returns at once
        // 256 KiB in 0.5 ms: 524 MB/s, a burst's reading: the 2 MiB probe follows.
        let fast = AutoCompression(direction: .parcels)
        fast.probeSent(to: "w", connection: connection, at: 200)
        _ = fast.probeAnswered(by: "w", padding: 1, largest: 4 << 20, at: 200.001)
        #expect(fast.probeAnswered(by: "w", padding: small, largest: 4 << 20, at: 200.0015) == grown)
        fast.probeSent(to: "w", connection: connection, padding: grown, at: 200.0015)
        _ = fast.probeAnswered(by: "w", padding: 1, largest: 4 << 20, at: 200.002)
        #expect(fast.probeAnswered(by: "w", padding: small, largest: 4 << 20, at: 200.003) == nil)
        // 2 MiB in 16 ms: 131 MB/s, the estimate; no third probe.
        #expect(fast.probeAnswered(by: "w", padding: UInt64(grown), largest: 4 << 20, at: 200.018) == nil)
        #expect(abs((fast.estimate(for: "w") ?? 0) - Double(grown) / 0.016) < 1)
        fast.awaitProbe(for: "w")
        // Parcels of 1 MiB: the worker may take no 2 MiB frame, the fast reading stands.
        let capped = AutoCompression(direction: .parcels)
        capped.probeSent(to: "w", connection: connection, at: 300)
        _ = capped.probeAnswered(by: "w", padding: 1, largest: 1 << 20, at: 300.001)
        #expect(capped.probeAnswered(by: "w", padding: small, largest: 1 << 20, at: 300.0015) == nil)
        #expect(abs((capped.estimate(for: "w") ?? 0) - Double(small) / 0.0005) < 1)
        // A worker's estimate from the probe as it arrived, until its own sends make one.
        let results = AutoCompression(direction: .results)
        results.seed(node: "master", bytesPerSecond: 1e9)
        #expect(results.estimate(for: "master") == 1e9)
    }

    /// Random bytes, a fixed codec: every parcel goes uncompressed (it would not shrink by 3%), the
    /// summary says so, and the result is exact. On loopback: the rule needs no shaped link.
    @Test func randomBytesGoUncompressedWhateverTheCodec() async throws {
        let directory = try TemporaryDirectory()
        var random = SystemRandomNumberGenerator()
        let noise = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &random) }
        let corpus = try directory.file("noise.bin", noise)
        let cookie = "auto-\(UUID().uuidString)"
        let cookieFile = try directory.file("cookie", Array(cookie.utf8))
        let worker = try TestWorker(cookie: cookie)
        let config = try Self.clusterFile(in: directory, worker: worker.address, cookieFile: cookieFile)
        for compression in ["zstd:3", "auto"] {
            let result = try CommandRunner.run(
                [
                    "run", "--config", config, "--no-master-work", "--compression", compression,
                    "--parcel-size", "128KiB", "--verbose", corpus,
                ])
            #expect(result.status == 0, "\(result.stderr.suffix(2000))")
            let exact = result.stdout == Reference.text(noise, lowercase: false)
            #expect(exact, "\(compression): the output differs from the reference")
            let sent = result.stderr.split(separator: "\n").first { $0.contains("  sent ") } ?? ""
            // Raw and wire megabytes are the same: nothing was compressed.
            let figures = sent.split(separator: " ").filter { Double($0) != nil }
            #expect(figures.count >= 2 && figures[0] == figures[1], "\(compression): \(sent)")
            if compression == "auto" {
                // The first choice (whichever parcel a pool thread reached first) and every later one.
                let choices = result.stderr.split(separator: "\n").filter {
                    $0.contains("compression-chosen: parcels -> \(worker.address): ")
                }
                #expect(!choices.isEmpty, "\(result.stderr.suffix(3000))")
                #expect(
                    // The link's estimate (from the probe) may come before the reason.
                    choices.allSatisfy { $0.contains(": none from #") && $0.contains("incompressible)") },
                    "\(choices)")
            } else {
                #expect(result.stderr.contains("parcels sent uncompressed"), "\(result.stderr.suffix(3000))")
            }
        }
    }

    /// One worker behind a veth link shaped to 10 Gbit/s: `auto` measures it as fast and stops
    /// compressing (or goes to lz4). Mid-step the test slows the link to 40 Mbit/s (`tc qdisc
    /// change`): the choice moves to zstd. Decisions are asserted, not timings; the output is exact.
    @Test(.enabled(if: NetworkNamespaces.available, skipReason))
    func aLinkWhoseSpeedChangesMidStepChangesTheChoice() throws {
        let lan = try NetworkNamespaces(workers: 1)
        defer {
            let leftovers = lan.tearDown()
            #expect(leftovers.isEmpty, "namespaces left behind: \(leftovers)")
        }
        let host = lan.workers[0]
        try lan.shape(host, rate: "10gbit")
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 21)
        let text = generator.generate(byteCount: 32 << 20)
        let corpus = try directory.file("corpus.txt", text)
        let cookie = try directory.file("cookie", Array("auto-\(UUID().uuidString)".utf8))
        let executable = CommandRunner.executable.path
        let port = 7731
        let worker = try lan.start(
            in: host.namespace, executable,
            ["worker", "--listen", "\(host.address):\(port)", "--threads", "2", "--cookie-file", cookie])
        let listening = "listening on \(host.address):\(port)"
        guard worker.wait(timeout: 10, until: { output, _ in output.contains { $0.text == listening } }) else {
            Issue.record("the worker did not start: \(worker.stderrText)")
            return
        }
        let node = "\(host.address):\(port)"
        let master = try lan.start(
            in: lan.master, executable,
            [
                "run", "--config", try Self.clusterFile(in: directory, worker: node, cookieFile: cookie),
                "--no-master-work", "--compression", "auto", "--parcel-size", "1MiB", "--verbose", corpus,
            ])
        // Once the fast link is measured and a codec other than zstd taken, slow the link down.
        let fastChoice = master.wait(timeout: 30) { _, errors in
            errors.contains {
                $0.text.contains("compression-chosen: parcels -> \(node): ") && $0.text.contains("(link ")
                    && !$0.text.contains(": zstd")
            }
        }
        #expect(fastChoice, "no measured choice on a 10 Gbit/s link: \(master.stderrText.suffix(3000))")
        try lan.shape(host, rate: "40mbit", change: true)
        guard master.waitForExit(timeout: 60) else {
            Issue.record("the step did not finish: \(master.stderrText.suffix(3000))")
            return
        }
        let stderr = master.stderrText
        #expect(master.status == 0, "\(stderr.suffix(3000))")
        let exact = master.stdout == Reference.text(text, lowercase: false)
        #expect(exact, "the output differs from the reference")
        // Every choice is in the summary: a measured fast one, then zstd once the link slowed.
        let choices = stderr.split(separator: "\n").filter { $0.hasPrefix("  compression parcels -> \(node): ") }
        let fast = choices.firstIndex { $0.contains("(link ") && !$0.contains(": zstd") }
        #expect(fast != nil, "no measured fast choice: \(choices)")
        if let fast {
            #expect(
                choices[(fast + 1)...].contains { $0.contains(": zstd") && $0.contains("(link ") },
                "the choice did not move to zstd after the link slowed: \(choices)")
        }
        #expect(stderr.contains("compression results <- \(node): "), "\(stderr.suffix(3000))")
        print("auto over a link slowed from 10 Gbit/s to 40 Mbit/s mid-step:\n" + choices.joined(separator: "\n"))
    }
}

import Foundation
import Testing

@testable import ElasticFlow

/// `minWorkers` (`--min-workers`): a step starts once that many listed workers are ready; the
/// others are tried again and join as they come. Real worker processes on loopback; every result
/// is compared byte for byte with the naive reference.
@Suite(.serialized) struct MinWorkersTests {
    /// The step updates of a step, for the test to wait on and look at.
    final class Updates: Interceptor, @unchecked Sendable {
        // Guarded by lock.
        private let lock = NSCondition()
        private var seen: [(state: StepUpdateState, detail: String)] = []

        func stepUpdated(step: UInt32, state: StepUpdateState, detail: String) {
            lock.lock()
            seen.append((state, detail))
            lock.broadcast()
            lock.unlock()
        }

        var all: [(state: StepUpdateState, detail: String)] { lock.withLock { seen } }

        /// Waits until an update of `state` arrives (the step's own time-outs end a step that
        /// never gets there: `failed` ends the wait too).
        func wait(for state: StepUpdateState) {
            lock.lock()
            while !seen.contains(where: { $0.state == state || $0.state == .failed }) {
                _ = lock.wait(until: Date(timeIntervalSinceNow: 0.05))
            }
            lock.unlock()
        }
    }

    @Test func aListedWorkerDownAtStartJoinsLaterAndGetsParcels() throws {
        let directory = try TemporaryDirectory()
        // 24 parcels of 32 KiB at 150 ms each: about 3.6 s on the first worker alone, so the late
        // one, started once the step runs, finds parcels left whatever the machine's load.
        let text = ReliabilityTests.corpus(seed: 41, bytes: 24 * (32 << 10))
        let path = try directory.file("corpus.txt", text)
        let present = try TestWorker(cookie: "m")
        let latePort = try freePort()
        let lateAddress = "127.0.0.1:\(latePort)"
        var configuration = try ReliabilityTests.configuration([present], cookie: "m")
        configuration.workers.append(try NodeAddress(parsing: lateAddress))
        configuration.minWorkers = 1
        configuration.parcelSize = 32 << 10
        configuration.inFlight = 1
        configuration.speculation = nil  // every parcel a late worker gets is one it was given
        let master = Master(configuration: configuration)
        let updates = Updates()
        master.add(updates)
        let step = ReliabilityTests.BackgroundStep(
            master, task: "slow-wordcount", path: path, options: TaskOptions(parameters: ["delay-ms": "150"]))
        updates.wait(for: .running)
        let late = try TestWorker(
            cookie: "m", arguments: ["worker", "--listen", lateAddress, "--threads", "2"])
        let report = try step.wait()
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        #expect(report.summary.receiptsClosed == report.summary.parcels)
        let byNode = report.summary.parcelsByNode
        #expect(byNode[present.address, default: 0] > 0, "\(byNode)")
        #expect(byNode[lateAddress, default: 0] > 0, "the late worker got no parcel: \(byNode)")
        let pending = updates.all.first { $0.state == .workersPending }
        #expect(pending?.detail.contains("started with 1 of 2 listed workers") == true, "\(updates.all)")
        #expect(pending?.detail.contains(lateAddress) == true, "\(updates.all)")
        #expect(updates.all.contains { $0.state == .nodeUp && $0.detail == lateAddress }, "\(updates.all)")
        _ = late.stop()
    }

    @Test func tooFewReadyWithinTheConnectTimeoutFailsNamingTheMissingOnes() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("small.txt", Array("a b\n".utf8))
        let present = try TestWorker(cookie: "m")
        let missing = "127.0.0.1:\(try freePort())"
        var configuration = try ReliabilityTests.configuration([present], cookie: "m")
        configuration.workers.append(try NodeAddress(parsing: missing))
        configuration.minWorkers = 2
        configuration.connectTimeout = .seconds(0.5)
        #expect {
            _ = try Master(configuration: configuration).run(task: "wordcount", sources: [.file(path)])
        } throws: { error in
            let text = "\(error)"
            return text.contains("only 1 of the 2 worker(s) --min-workers asks for were ready within 0.500 s")
                && text.contains("\(missing) (") && text.contains("refused")
        }
    }

    @Test func aListedWorkerWithAnotherCookieIsLeftOutWhileEnoughAreLeft() throws {
        let directory = try TemporaryDirectory()
        let text = ReliabilityTests.corpus(seed: 43, bytes: 400_000)
        let path = try directory.file("corpus.txt", text)
        let good = try TestWorker(cookie: "m")
        let other = try TestWorker(cookie: "another")
        var configuration = try ReliabilityTests.configuration([good, other], cookie: "m")
        configuration.minWorkers = 1
        let master = Master(configuration: configuration)
        let updates = Updates()
        master.add(updates)
        // Refused before or after the start (whichever comes first), it is left out, not retried.
        let report = try master.run(task: "wordcount", sources: [.file(path)])
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        #expect(report.summary.parcelsByNode[other.address, default: 0] == 0)
        let refusal = updates.all.first { $0.state == .joinRefused }
        #expect(refusal?.detail.contains("\(other.address) failed authentication") == true, "\(updates.all)")
        // With both needed, the refusal fails the step at once, as without --min-workers.
        configuration.minWorkers = 2
        #expect {
            _ = try Master(configuration: configuration).run(task: "wordcount", sources: [.file(path)])
        } throws: { error in
            "\(error)".contains("worker \(other.address) failed authentication")
        }
    }

    @Test func theCommandLineStartsWithTheReachableOnesOnlyWhenAsked() throws {
        let directory = try TemporaryDirectory()
        let text = ReliabilityTests.corpus(seed: 42, bytes: 300_000)
        let path = try directory.file("corpus.txt", text)
        let worker = try TestWorker(cookie: "m")
        let down = "127.0.0.1:\(try freePort())"
        let listed = "\(worker.address),\(down)"
        // The default: every listed worker is needed, and an unreachable one fails at once.
        let refused = try CommandRunner.run(["count", "--workers", listed, "--cookie", "m", path], timeout: 60)
        #expect(refused.status != 0 && refused.stdout.isEmpty)
        #expect(refused.stderr.contains("cannot reach worker \(down)"), "\(refused.stderr)")
        #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        // --min-workers 1: the step runs on the one that answers, with the exact result, and says
        // which listed worker it still tries.
        let started = try CommandRunner.run(
            ["count", "--workers", listed, "--min-workers", "1", "--cookie", "m", "--parcel-size", "32KiB", path],
            timeout: 60)
        #expect(started.status == 0, "\(started.stderr)")
        #expect(Bytes(started.stdout) == Bytes(Reference.text(text, lowercase: false)))
        #expect(started.stderr.contains("workers-pending: started with 1 of 2 listed workers"), "\(started.stderr)")
        #expect(started.stderr.contains(down), "\(started.stderr)")
        // The cluster file's key does the same.
        let cookie = try directory.file("cookie", Array("m".utf8))
        let config = try directory.file(
            "cluster.json",
            Array(
                """
                {"nodes": [{"name": "a", "address": "\(worker.address)", "role": "worker"},
                           {"name": "b", "address": "\(down)", "role": "worker"}],
                 "cookieFile": "\(cookie)", "minWorkers": 1}
                """.utf8))
        let fromFile = try CommandRunner.run(["run", "--config", config, path], timeout: 60)
        #expect(fromFile.status == 0, "\(fromFile.stderr)")
        #expect(Bytes(fromFile.stdout) == Bytes(Reference.text(text, lowercase: false)))
        // The file's minWorkers is judged against the workers the step really has: --workers.
        let second = try TestWorker(cookie: "m")
        let small = try directory.file(
            "small.json",
            Array(
                """
                {"nodes": [{"name": "b", "address": "\(down)", "role": "worker"}],
                 "cookieFile": "\(cookie)", "minWorkers": 2}
                """.utf8))
        let replaced = try CommandRunner.run(
            ["run", "--config", small, "--workers", "\(worker.address),\(second.address)", path], timeout: 60)
        #expect(replaced.status == 0, "\(replaced.stderr)")
        #expect(Bytes(replaced.stdout) == Bytes(Reference.text(text, lowercase: false)))
    }

    @Test func badValuesAreRefusedBeforeAnyWorkerIsContacted() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("small.txt", Array("a\n".utf8))
        let cookie = try directory.file("cookie", Array("m".utf8))
        let two = "127.0.0.1:1,127.0.0.1:2"
        for (arguments, message) in [
            (["count", "--workers", two, "--min-workers", "0", path], "must be in 1...65536, not 0"),
            (["count", "--workers", two, "--min-workers=-1", path], "must be in 1...65536, not -1"),
            (["count", "--workers", two, "--min-workers", "3", path], "is 3, but only 2 worker(s) are listed"),
            (["count", "--workers", "", "--listen", "127.0.0.1:0", "--min-workers", "1", path], "only 0 worker(s)"),
            (["count", "--workers", two, "--min-workers", "many", path], "--min-workers"),
        ] {
            let result = try CommandRunner.run(arguments + ["--cookie", "m"], timeout: 20)
            #expect(result.status != 0 && !result.signalled, "\(arguments)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        let fileCases = [("0", "not 0"), ("3", "is 3, but only 2 worker(s)"), ("\"2\"", "wrong type")]
        for (index, (value, message)) in fileCases.enumerated() {
            let config = try directory.file(
                "cluster-\(index).json",
                Array(
                    """
                    {"nodes": [{"name": "a", "address": "127.0.0.1:1", "role": "worker"},
                               {"name": "b", "address": "127.0.0.1:2", "role": "worker"}],
                     "cookieFile": "\(cookie)", "minWorkers": \(value)}
                    """.utf8))
            let result = try CommandRunner.run(["run", "--config", config, path], timeout: 20)
            #expect(result.status != 0 && !result.signalled, "\(value)")
            #expect(
                result.stderr.contains(message) && result.stderr.contains("minWorkers"), "\(value): \(result.stderr)")
        }
        var configuration = ClusterConfiguration(workers: [], cookie: try Cookie("m"))
        configuration.minWorkers = 1
        #expect(throws: ElasticFlowError.self) { try configuration.validate() }
    }
}

import Foundation
import Testing

@testable import ElasticFlow

/// Failures survived: workers killed, stopped, leaving and joining, chaos. Every final result is
/// compared byte for byte with the naive reference.
@Suite(.serialized) struct ReliabilityTests {
    static func corpus(seed: UInt64, bytes: Int) -> [UInt8] {
        var generator = CorpusGenerator(seed: seed)
        return generator.generate(byteCount: bytes)
    }

    static func configuration(_ workers: [TestWorker], cookie: String) throws -> ClusterConfiguration {
        var configuration = ClusterConfiguration(
            workers: try workers.map { try NodeAddress(parsing: $0.address) }, cookie: try Cookie(cookie))
        configuration.parcelSize = 16 << 10
        configuration.masterProcesses = false
        configuration.heartbeatTimeout = .seconds(1.0)
        configuration.heartbeatInterval = .seconds(0.2)
        configuration.inFlight = 2
        return configuration
    }

    /// Runs a step on a background thread, so the test can act on the cluster meanwhile.
    final class BackgroundStep: @unchecked Sendable {
        // Written by the background thread before `done` is signalled, read after.
        private var outcome: Result<StepReport, ElasticFlowError>?
        private let done = DispatchSemaphore(value: 0)

        convenience init(_ master: Master, task: String, path: String, options: TaskOptions = .init()) {
            self.init(master, task: task, sources: [.file(path)], options: options)
        }

        init(_ master: Master, task: String, sources: [DataSource], options: TaskOptions = .init()) {
            let thread = Thread { [self] in
                do throws(ElasticFlowError) {
                    outcome = .success(try master.run(task: task, sources: sources, options: options))
                } catch {
                    outcome = .failure(error)
                }
                done.signal()
            }
            thread.start()
        }

        func wait() throws -> StepReport {
            done.wait()
            return try outcome!.get()
        }
    }

    /// Counts events so a test can wait until the step is under way.
    final class Progress: Interceptor, @unchecked Sendable {
        // Guarded by lock.
        private let lock = NSCondition()
        private var aggregated = 0
        func aggregated(_ receipt: Receipt) {
            lock.lock()
            aggregated += 1
            lock.broadcast()
            lock.unlock()
        }
        func wait(forAggregated count: Int) {
            lock.lock()
            while aggregated < count { _ = lock.wait(until: Date(timeIntervalSinceNow: 0.05)) }
            lock.unlock()
        }
        var aggregatedCount: Int {
            lock.lock()
            defer { lock.unlock() }
            return aggregated
        }
    }

    @Test(arguments: [5, 20, 60])
    func aWorkerKilledMidStepLosesNothing(afterParcels: Int) throws {
        let directory = try TemporaryDirectory()
        let text = Self.corpus(seed: UInt64(afterParcels), bytes: 2_500_000)
        let path = try directory.file("corpus.txt", text)
        let workers = [try TestWorker(cookie: "k"), try TestWorker(cookie: "k")]
        var configuration = try Self.configuration(workers, cookie: "k")
        // No speculative copies: on a loaded machine every parcel the killed worker held could
        // already have a copy on the other one, and then none would need sending again (seen in CI).
        configuration.speculation = nil
        let master = Master(configuration: configuration)
        let progress = Progress()
        master.add(progress)
        // 10 ms a parcel: the worker always holds parcels when it is killed, even on a loaded machine.
        let step = BackgroundStep(
            master, task: "slow-wordcount", path: path, options: TaskOptions(parameters: ["delay-ms": "10"]))
        progress.wait(forAggregated: afterParcels)
        kill(workers[0].process.processIdentifier, SIGKILL)
        let report = try step.wait()
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        #expect(report.summary.receiptsClosed == report.summary.parcels)
        #expect(report.summary.retries >= 1, "the killed worker held parcels that went elsewhere")
    }

    @Test func everyWorkerKilledLeavesTheRestToTheMaster() throws {
        let directory = try TemporaryDirectory()
        let text = Self.corpus(seed: 9, bytes: 1_500_000)
        let path = try directory.file("corpus.txt", text)
        let workers = [try TestWorker(cookie: "k"), try TestWorker(cookie: "k")]
        let master = Master(configuration: try Self.configuration(workers, cookie: "k"))
        let progress = Progress()
        master.add(progress)
        let step = BackgroundStep(
            master, task: "slow-wordcount", path: path, options: TaskOptions(parameters: ["delay-ms": "2"]))
        progress.wait(forAggregated: 10)
        for worker in workers { kill(worker.process.processIdentifier, SIGKILL) }
        let report = try step.wait()
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        #expect(report.summary.parcelsByNode["master", default: 0] > 0)
    }

    @Test func chaosAt45PercentStillGivesTheExactResult() throws {
        let directory = try TemporaryDirectory()
        let workers = [try TestWorker(cookie: "c"), try TestWorker(cookie: "c")]
        var injectedAnywhere: [FaultKind: Int] = [:]
        for seed in [UInt64(1), 2, 3] {
            let text = Self.corpus(seed: seed, bytes: 1_200_000)
            let path = try directory.file("corpus-\(seed).txt", text)
            let result = try CommandRunner.run(
                [
                    "count", "--lowercase", "--workers", workers.map(\.address).joined(separator: ","), "--cookie", "c",
                    "--parcel-size", "16KiB", "--chaos", "45", "--chaos-seed", "\(seed)", "--summary", path,
                ])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(Bytes(result.stdout) == Bytes(Reference.text(text, lowercase: true)), "seed \(seed)")
            let chaosLine = result.stderr.split(separator: "\n").first { $0.contains("chaos (injected/recovered)") }
            #expect(chaosLine != nil, "\(result.stderr)")
            // Every injected fault was recovered.
            for kind in FaultKind.allCases {
                let entry = chaosLine.flatMap { line in line.split(separator: ",").first { $0.contains(kind.rawValue) }
                }
                let numbers = entry?.split(separator: " ").last?.split(separator: "/").compactMap { Int($0) } ?? []
                #expect(numbers.count == 2 && numbers[0] == numbers[1], "seed \(seed), \(kind): \(chaosLine ?? "")")
                injectedAnywhere[kind, default: 0] += numbers.first ?? 0
            }
        }
        for kind in FaultKind.allCases { #expect(injectedAnywhere[kind, default: 0] > 0, "\(kind) never injected") }
    }

    @Test func theSameSeedMakesTheSameDecisions() throws {
        let a = try ChaosSettings(percent: 45, seed: 7)
        let b = try ChaosSettings(percent: 45, seed: 7)
        let c = try ChaosSettings(percent: 45, seed: 8)
        var differs = false
        var injected = 0
        for sequence in UInt64(1)...2000 {
            for site in [ChaosSite.masterSendsParcel, .workerProcesses] {
                let first = a.fault(at: site, step: 1, sequence: sequence, attempt: 1, maxAttempts: 4)
                #expect(first == b.fault(at: site, step: 1, sequence: sequence, attempt: 1, maxAttempts: 4))
                if first != c.fault(at: site, step: 1, sequence: sequence, attempt: 1, maxAttempts: 4) {
                    differs = true
                }
                if first != nil { injected += 1 }
                // Never on the last allowed attempt, so a chaotic step always completes.
                #expect(a.fault(at: site, step: 1, sequence: sequence, attempt: 4, maxAttempts: 4) == nil)
            }
        }
        #expect(differs)
        #expect((1600...2000).contains(injected), "45% of 4000 chances: \(injected)")
        #expect(throws: ElasticFlowError.self) { try ChaosSettings(percent: 46, seed: 1) }
    }

    @Test func aLateAnswerFromAWorkerPresumedDeadIsDroppedAsADuplicate() throws {
        let directory = try TemporaryDirectory()
        let text = Self.corpus(seed: 12, bytes: 2_500_000)
        let path = try directory.file("corpus.txt", text)
        let workers = [try TestWorker(cookie: "k"), try TestWorker(cookie: "k")]
        var configuration = try Self.configuration(workers, cookie: "k")
        configuration.heartbeatTimeout = .seconds(0.6)
        let master = Master(configuration: configuration)
        let progress = Progress()
        master.add(progress)
        let step = BackgroundStep(
            master, task: "slow-wordcount", path: path, options: TaskOptions(parameters: ["delay-ms": "20"]))
        progress.wait(forAggregated: 4)
        // Frozen with parcels in hand: presumed dead after 0.6 s, its parcels go to the other
        // worker; thawed later, it answers them — too late.
        kill(workers[0].process.processIdentifier, SIGSTOP)
        Thread.sleep(forTimeInterval: 1.0)
        kill(workers[0].process.processIdentifier, SIGCONT)
        let report = try step.wait()
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        #expect(report.summary.duplicates >= 1)
        #expect(report.summary.retries >= 1)
    }

    @Test func aParcelStuckOnALiveWorkerIsSentAgainAndTheFirstResultWins() throws {
        let directory = try TemporaryDirectory()
        let text = Self.corpus(seed: 14, bytes: 40_000)
        let path = try directory.file("corpus.txt", text)
        let workers = [try TestWorker(cookie: "k"), try TestWorker(cookie: "k")]
        var configuration = try Self.configuration(workers, cookie: "k")
        configuration.parcelTimeout = .seconds(0.4)
        configuration.inFlight = 1
        // Every parcel goes overdue here, on both workers alike: overdue parcels count towards a
        // node's exclusion (TrustTests), which would leave no node.
        configuration.excludeAfter = nil
        let master = Master(configuration: configuration)
        let recorder = EventRecorder()
        master.add(recorder)
        // Every parcel takes 1.2 s while the workers keep answering heartbeats: each is overdue
        // at 0.4 s and sent again; whichever answer comes first is aggregated, the other dropped.
        let report = try master.run(
            task: "slow-wordcount", sources: [.file(path)], options: TaskOptions(parameters: ["delay-ms": "1200"]))
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        let overdue = recorder.events.filter {
            if case .stepUpdate(_, .parcelOverdue, _) = $0 { true } else { false }
        }
        #expect(!overdue.isEmpty)
        #expect(report.summary.retries >= 1)
        #expect(report.summary.receiptsClosed == report.summary.parcels)
    }

    @Test func workersJoinAndLeaveARunningStep() throws {
        let directory = try TemporaryDirectory()
        let text = Self.corpus(seed: 13, bytes: 1_500_000)
        let path = try directory.file("corpus.txt", text)
        let first = try TestWorker(cookie: "j")
        let leaving = try TestWorker(cookie: "j")
        var configuration = try Self.configuration([first, leaving], cookie: "j")
        let port = try freePort()
        configuration.listen = NodeAddress(host: "127.0.0.1", port: port)
        let master = Master(configuration: configuration)
        let progress = Progress()
        master.add(progress)
        let step = BackgroundStep(
            master, task: "slow-wordcount", path: path, options: TaskOptions(parameters: ["delay-ms": "10"]))
        progress.wait(forAggregated: 5)
        let joiner = try TestWorker(
            cookie: "j", arguments: ["worker", "--join", "127.0.0.1:\(port)", "--threads", "2"])
        progress.wait(forAggregated: 20)
        let log = leaving.stop()  // SIGTERM: graceful leave
        let report = try step.wait()
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        #expect(report.summary.parcelsByNode.keys.contains { $0.hasPrefix("joined:") }, "\(report.summary)")
        #expect(report.summary.parcelsByNode[leaving.address, default: 0] > 0)
        #expect(log.contains("stopping gracefully"), "\(log)")
        _ = joiner.stop()
    }
}

/// A task that throws on every parcel holding the word "poison".
struct PoisonTask: ParcelTask {
    struct Poisoned: Error, CustomStringConvertible { var description: String { "poisoned parcel" } }
    func process(_ parcel: ParcelBytes, options: TaskOptions) throws -> [UInt8] {
        if parcel.array.firstRange(of: Array("poison".utf8)) != nil { throw Poisoned() }
        return try WordCountTask().process(parcel, options: options)
    }
    func makeAggregation(options: TaskOptions) throws -> any TaskAggregation {
        try WordCountTask().makeAggregation(options: options)
    }
}

@Suite struct RetryLimitTests {
    @Test func aParcelThatAlwaysFailsFailsTheStepAfterMaxAttemptsWithItsReceipt() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 40)
        let text =
            generator.generate(byteCount: 100_000) + Array("poison\n".utf8) + generator.generate(byteCount: 100_000)
        let path = try directory.file("t.txt", text)
        var registry = TaskRegistry()
        try registry.register("poison", PoisonTask())
        var configuration = ClusterConfiguration(workers: [], cookie: try Cookie("x"))
        configuration.parcelSize = 16 << 10
        configuration.maxAttempts = 3
        let master = Master(configuration: configuration, tasks: registry)
        let recorder = EventRecorder()
        master.add(recorder)
        do {
            _ = try master.run(task: "poison", sources: [.file(path)])
            Issue.record("the step should have failed")
        } catch {
            #expect(error.description.contains("failed 3 times"), "\(error)")
            #expect(error.description.contains("poisoned parcel"), "\(error)")
        }
        let failed = recorder.events.contains { if case .stepUpdate(_, .failed, _) = $0 { true } else { false } }
        #expect(failed)
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
func freePort() throws -> UInt16 {
    let (probe, port) = try Loopback.bind(backlog: nil)
    close(probe)
    return port
}

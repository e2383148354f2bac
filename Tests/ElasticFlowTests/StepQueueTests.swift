import Foundation
import Testing

@testable import ElasticFlow

/// Steps queued, cancelled, failed, retried and resumed after the master was SIGKILLed.
@Suite(.serialized) struct StepQueueTests {
    static func localMaster(parcelSize: Int = 16 << 10) throws -> Master {
        var configuration = ClusterConfiguration(workers: [], cookie: try Cookie("local"))
        configuration.parcelSize = parcelSize
        return Master(configuration: configuration)
    }

    @Test func stepsRunInOrderWithStatesTimelinesAndResults() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 31)
        let first = generator.generate(byteCount: 200_000)
        let second = generator.generate(byteCount: 100_000)
        let queue = try StepQueue(master: try Self.localMaster(), stepData: directory.path("steps"))
        let a = try queue.add(StepDefinition(name: "a", sources: [try directory.file("a.txt", first)]))
        let bad = try queue.add(
            StepDefinition(
                name: "bad", task: "no-such-task", sources: [directory.path("a.txt")], actionOnFailure: .continue))
        let b = try queue.add(
            StepDefinition(
                name: "b", task: "line-lengths", sources: [try directory.file("b.txt", second)]))
        #expect(queue.run() == false)
        let states = Dictionary(uniqueKeysWithValues: queue.list().map { ($0.step, $0.state) })
        #expect(states[a] == .completed)
        #expect(states[bad] == .failed)
        #expect(states[b] == .completed)
        #expect(queue.list().first { $0.step == bad }?.failure?.contains("unknown task") == true)
        #expect(queue.list().first { $0.step == a }?.timeline.map(\.state) == [.pending, .running, .completed])
        guard case .wordCount(let counter) = queue.output(of: a) else {
            Issue.record("no output for step a")
            return
        }
        #expect(try counter.rendered(format: .text) == Reference.text(first, lowercase: false))
        guard case .value(let histogram) = queue.output(of: b) else {
            Issue.record("no output for step b")
            return
        }
        #expect(histogram == (try LocalTask.run(named: "line-lengths", text: second)))
        // The journal has the same story, and the result can be read back.
        let records = try StepJournal.steps(in: directory.path("steps"))
        #expect(records.map(\.state) == [.completed, .failed, .completed])
        guard case .wordCount(let stored) = try StepExecution.output(of: a, in: directory.path("steps")) else {
            Issue.record("no journaled result")
            return
        }
        #expect(stored.sorted() == counter.sorted())
    }

    @Test func cancelAndWaitCancelsThePendingSteps() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("x.txt", Array("x y\n".utf8))
        let queue = try StepQueue(master: try Self.localMaster())
        let failing = try queue.add(
            StepDefinition(name: "f", task: "no-such-task", sources: [path], actionOnFailure: .cancelAndWait))
        let next = try queue.add(StepDefinition(name: "n", sources: [path]))
        let cancelledBefore = try queue.add(StepDefinition(name: "c", sources: [path]))
        #expect(queue.cancel(cancelledBefore))
        queue.run()
        let states = Dictionary(uniqueKeysWithValues: queue.list().map { ($0.step, $0.state) })
        #expect(states[failing] == .failed)
        #expect(states[next] == .cancelled)
        #expect(states[cancelledBefore] == .cancelled)
        #expect(queue.output(of: next) == nil)
        #expect(throws: ElasticFlowError.self) { try queue.retryStep(failing) }  // no journal: clear error
    }

    @Test func aCancelledRunningStepIsRetriedFromItsJournalSendingOnlyWhatWasMissing() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 32)
        let text = generator.generate(byteCount: 1_500_000)
        let path = try directory.file("t.txt", text)
        let master = try Self.localMaster()
        let progress = ReliabilityTests.Progress()
        master.add(progress)
        let queue = try StepQueue(master: master, stepData: directory.path("steps"))
        let step = try queue.add(
            StepDefinition(
                name: "slow", task: "slow-wordcount", sources: [path],
                options: TaskOptions(parameters: ["delay-ms": "5"])))
        let runner = Thread { queue.run() }
        runner.start()
        progress.wait(forAggregated: 20)
        #expect(queue.cancel(step))
        while queue.list().first?.state == .running { usleep(10_000) }
        #expect(queue.list().first?.state == .cancelled)
        let report = try queue.retryStep(step)
        guard case .wordCount(let counter) = report.output else {
            Issue.record("no word count")
            return
        }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        let processedAgain = report.summary.parcelsByNode.values.reduce(0, +)
        #expect(processedAgain < report.summary.parcels, "only unaggregated parcels are processed again")
        #expect(processedAgain > 0)
        #expect(queue.list().first?.timeline.map(\.state).contains(.cancelled) == true)
    }

    @Test(arguments: [0.3, 0.8])
    func aMasterKilledMidStepResumesToTheSameResult(after seconds: Double) throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 33)
        let text = generator.generate(byteCount: 3_000_000)
        let path = try directory.file("t.txt", text)
        let workers = [try TestWorker(cookie: "r"), try TestWorker(cookie: "r")]
        let arguments = [
            "count", "--workers", workers.map(\.address).joined(separator: ","), "--parcel-size", "16KiB",
            "--step-data", directory.path("steps"), "--summary", path,
        ]
        // The first master: killed with SIGKILL mid-step.
        let process = Process()
        process.executableURL = CommandRunner.executable
        process.arguments = arguments
        process.environment = ["ELASTICFLOW_COOKIE": "r"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: seconds)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        // The same command again resumes the step.
        let resumed = try CommandRunner.run(arguments, environment: ["ELASTICFLOW_COOKIE": "r"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(Bytes(resumed.stdout) == Bytes(Reference.text(text, lowercase: false)))
        let steps = try CommandRunner.run(["steps", "--step-data", directory.path("steps")])
        #expect(steps.stdoutText.contains("completed"), "\(steps.stdoutText)")
        if resumed.stderr.contains("resuming step") {
            #expect(steps.stdoutText.contains("interrupted"), "\(steps.stdoutText)")
        }
        // And the journaled result reads back the same.
        let stored = try CommandRunner.run(["steps", "--step-data", directory.path("steps"), "--step", "1", "--result"])
        #expect(Bytes(stored.stdout) == Bytes(resumed.stdout))
    }

    @Test func ctrlCCancelsAJournaledStepAndRetryFinishesIt() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 35)
        let text = generator.generate(byteCount: 1_000_000)
        let path = try directory.file("t.txt", text)
        let config = try directory.file("cluster.json", Array(#"{"nodes": []}"#.utf8))
        let process = Process()
        process.executableURL = CommandRunner.executable
        process.arguments = [
            "run", "--config", config, "--task", "slow-wordcount", "--param", "delay-ms=20", "--parcel-size", "16KiB",
            "--step-data", directory.path("steps"), path,
        ]
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        // Signal once the step runs (its step.json says `running`: the handler that cancels it is
        // set before the queue runs), not after a fixed time, which a loaded machine outlasts.
        let deadline = Date(timeIntervalSinceNow: 30)
        func running() -> Bool {
            let record = FileManager.default.contents(atPath: directory.path("steps/step-1/step.json"))
            return record.map { String(decoding: $0, as: UTF8.self).contains("\"running\"") } ?? false
        }
        while !running() && process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        #expect(process.isRunning, "the step ended before it could be interrupted")
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let log = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus != 0)
        #expect(log.contains("cancelling step 1"), "\(log)")
        let listed = try CommandRunner.run(["steps", "--step-data", directory.path("steps")])
        #expect(listed.stdoutText.contains("cancelled"), "\(listed.stdoutText)")
        let retried = try CommandRunner.run(["retry", "--step-data", directory.path("steps"), "--summary"])
        #expect(retried.status == 0, "\(retried.stderr)")
        let expected = try CommandRunner.run(["count", path])
        #expect(Bytes(retried.stdout) == Bytes(expected.stdout))
    }

    @Test func aFailedStepIsRetriedFromTheCommandLine() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 34)
        let text = generator.generate(byteCount: 300_000)
        let path = try directory.file("t.txt", text)
        let unreachable = "127.0.0.1:\(try freePort())"
        let failed = try CommandRunner.run(
            ["count", "--workers", unreachable, "--cookie", "c", "--step-data", directory.path("steps"), path])
        #expect(failed.status != 0)
        #expect(failed.stderr.contains("cannot reach worker"), "\(failed.stderr)")
        let listed = try CommandRunner.run(["steps", "--step-data", directory.path("steps")])
        #expect(listed.stdoutText.contains("failed"), "\(listed.stdoutText)")
        let retried = try CommandRunner.run(["retry", "--step-data", directory.path("steps"), "--step", "1"])
        #expect(retried.status == 0, "\(retried.stderr)")
        #expect(Bytes(retried.stdout) == Bytes(Reference.text(text, lowercase: false)))
        let again = try CommandRunner.run(["retry", "--step-data", directory.path("steps"), "--step", "1"])
        #expect(again.status != 0 && again.stderr.contains("nothing to resume"), "\(again.stderr)")
    }
}

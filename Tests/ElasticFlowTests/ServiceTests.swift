import ElasticFlowService
import Foundation
import Logging
import ServiceLifecycle
import Testing

@testable import ElasticFlow

/// `WorkerService` and `StepQueueService` run by a swift-service-lifecycle `ServiceGroup`: a
/// worker serves an exact step and stops on a graceful shutdown (triggered, and by SIGTERM to this
/// process); a queue's running step is cancelled by one.
@Suite(.serialized) struct ServiceTests {
    static let logger = Logger(label: "elasticflow.tests.service")

    @Test func aWorkerServiceServesUntilTheGroupShutsDownOnSIGTERM() async throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 91)
        let text = generator.generate(byteCount: 400_000)
        let path = try directory.file("t.txt", text)
        let cookie = try Cookie("service")
        let worker = try AsyncAPITests.inProcessWorker(cookie: cookie)
        let group = ServiceGroup(
            configuration: .init(
                services: [WorkerService(worker)], gracefulShutdownSignals: [.sigterm], logger: Self.logger))
        let running = Task { try await group.run() }
        let (report, configuration) = try await AsyncAPITests.count(path, onlyOn: worker, cookie: cookie)
        guard case .wordCount(let counter) = report.output else {
            Issue.record("no word count")
            return
        }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        // The group handles SIGTERM now (it set its handler up before the worker could serve).
        kill(getpid(), SIGTERM)
        try await running.value  // the worker drained and the group returned
        let after = try? await Master(configuration: configuration).run(task: "wordcount", sources: [.file(path)])
        #expect(after == nil, "a stopped worker serves no more")
    }

    @Test func aGracefulShutdownCancelsTheQueuesRunningStep() async throws {
        let directory = try TemporaryDirectory()
        let master = try StepQueueTests.localMaster()
        let progress = ReliabilityTests.Progress()
        master.add(progress)
        let queue = try StepQueue(
            master: master, stepData: directory.path("steps"), sources: SourceRegistry([LongSource()]))
        let step = try queue.add(
            StepDefinition(
                name: "slow", task: "slow-wordcount", sources: [LongSource().name],
                options: TaskOptions(parameters: ["delay-ms": "10"])))
        let group = ServiceGroup(
            configuration: .init(services: [StepQueueService(queue)], gracefulShutdownSignals: [], logger: Self.logger))
        let running = Task { try await group.run() }
        while progress.aggregatedCount < 3 { try await Task.sleep(for: .milliseconds(10)) }
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(queue.list().first { $0.step == step }?.state == .cancelled)
    }
}

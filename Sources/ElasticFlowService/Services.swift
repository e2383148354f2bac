import ElasticFlow
import ServiceLifecycle

/// A ``Worker`` as a swift-service-lifecycle `Service`: run by a `ServiceGroup`, it serves until
/// the group shuts down gracefully (SIGTERM, when the group lists it among its graceful-shutdown
/// signals) — then parcels in progress are finished and answered and every master gets BYE, as
/// `elasticflow worker` does on SIGTERM — or until the group is cancelled.
///
/// ```swift
/// let worker = try Worker(configuration: WorkerConfiguration(listen: address, cookie: cookie), tasks: tasks)
/// let group = ServiceGroup(configuration: .init(
///     services: [WorkerService(worker)], gracefulShutdownSignals: [.sigterm], logger: logger))
/// try await group.run()
/// ```
public struct WorkerService: Service {
    /// The worker served.
    public let worker: Worker

    /// - Parameter worker: a worker not yet started (`run` starts it).
    public init(_ worker: Worker) { self.worker = worker }

    /// Binds, serves, and returns once the worker has stopped.
    /// - Throws: `ElasticFlowError` when the address cannot be bound.
    public func run() async throws {
        let worker = worker
        try await withGracefulShutdownHandler {
            try await worker.run()
        } onGracefulShutdown: {
            worker.shutdown()
        }
    }
}

/// A ``StepQueue`` as a swift-service-lifecycle `Service`: runs its pending steps one after
/// another and returns; a graceful shutdown (SIGTERM) or the group's cancellation cancels the
/// running step and every pending one, cleanly, as Ctrl-C does on the command line (a journaled
/// step can be retried later).
public struct StepQueueService: Service {
    /// The queue run.
    public let queue: StepQueue
    private let progress: (@Sendable (UInt32, StepProgress) -> Void)?

    /// - Parameters:
    ///   - queue: the steps to run (add them before the group runs).
    ///   - progress: called about five times a second while a step runs.
    public init(_ queue: StepQueue, progress: (@Sendable (UInt32, StepProgress) -> Void)? = nil) {
        self.queue = queue
        self.progress = progress
    }

    /// Runs the pending steps; each one's state is in `queue.list()` afterwards.
    public func run() async throws {
        let queue = queue
        let progress = progress
        await withGracefulShutdownHandler {
            _ = await queue.run(progress: progress)
        } onGracefulShutdown: {
            for status in queue.list() where status.state == .pending || status.state == .running {
                queue.cancel(status.step)
            }
        }
    }
}

internal import CElasticFlow
import Foundation
import Logging

/// The master of a cluster: cuts the sources into parcels, hands each to the node with the fewest
/// open receipts (its own threads included, when `masterProcesses`), and aggregates results as
/// they return. Every worker runs the same program, so tasks are named, not shipped.
///
/// Each step is a `StepRun` (see its file for its parts, threads and lock order): the C event
/// loop's thread owns the sockets; a pool of `masterThreads` threads cuts, compresses and (for the
/// master's own share) processes parcels; a small merge pool merges remote results; the caller's
/// thread waits, checkpoints and reports progress.
public final class Master: @unchecked Sendable {
    // `interceptors` changes only between steps (documented on `add`).
    /// The configuration every step of this master runs with (validated when a step starts).
    public let configuration: ClusterConfiguration
    private let tasks: TaskRegistry
    private var interceptors: [any Interceptor] = []
    private var board: StatusBoard?
    /// The master's own log: every step's updates at `debug` and its parcel events at `trace`
    /// (metadata `step`, `receipt`, `node`), and the step queue's journal at `debug`.
    public let logger: Logger

    /// A master; nothing is contacted until `run(task:sources:options:step:progress:)`.
    /// - Parameters:
    ///   - configuration: the workers, cookie and settings of every step.
    ///   - tasks: the tasks steps may name; every worker must run a program whose registry holds the
    ///     same tasks under the same names.
    ///   - logger: the master's own log (see `logger`). Default: logs nothing. Interceptors
    ///     (`LoggingInterceptor`) are the per-event log a person reads; this one is for operators
    ///     who want the master's record at `debug`/`trace` with the rest of a service's logs.
    public init(
        configuration: ClusterConfiguration, tasks: TaskRegistry = .standard,
        logger: Logger = Logger(label: "elasticflow.master", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.configuration = configuration
        self.tasks = tasks
        self.logger = logger
    }

    /// Adds an interceptor; it sees the events of every later step. Not while a step runs.
    public func add(_ interceptor: any Interceptor) { interceptors.append(interceptor) }

    /// Keeps `board` up to date with every later step (the status page, `/api/status`,
    /// `/metrics`): its events, and a sample of the nodes and receipts about five times a second.
    /// Not while a step runs.
    public func report(to board: StatusBoard) { self.board = board }

    /// Runs one step to completion and returns its output.
    /// - Parameters:
    ///   - task: the registered name of the task every node runs on the parcels.
    ///   - sources: files, standard input or the app's own sources, cut in this order.
    ///   - options: the task's options, sent to every node.
    ///   - step: the step's number, carried by every receipt (1 for a single run).
    ///   - progress: called about five times a second on the calling thread.
    /// - Throws: `ElasticFlowError` — unreadable sources, unreachable or refused workers, a parcel
    ///   that failed too often.
    public func run(
        task: String, sources: [DataSource], options: TaskOptions = .init(), step: UInt32 = 1,
        progress: ((StepProgress) -> Void)? = nil
    ) throws(ElasticFlowError) -> StepReport {
        try run(
            StepPlan(step: step, task: task, sources: sources, options: options), progress: progress,
            cancellation: nil)
    }

    func run(_ plan: StepPlan, progress: ((StepProgress) -> Void)?, cancellation: CancellationFlag?)
        throws(ElasticFlowError) -> StepReport
    {
        // Only a logger that shows debug lines gets the events: none of the cost otherwise.
        let log: [any Interceptor] = logger.logLevel <= .debug ? [MasterEventLog(logger: logger)] : []
        let run = try StepRun(
            configuration: configuration, registry: tasks, plan: plan,
            interceptors: log + interceptors + (board.map { [$0] } ?? []), cancellation: cancellation, board: board)
        return try run.execute(progress: progress)
    }
}

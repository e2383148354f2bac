internal import CElasticFlow
import Foundation

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
    public let configuration: ClusterConfiguration
    private let tasks: TaskRegistry
    private var interceptors: [any Interceptor] = []

    public init(configuration: ClusterConfiguration, tasks: TaskRegistry = .standard) {
        self.configuration = configuration
        self.tasks = tasks
    }

    /// Adds an interceptor; it sees the events of every later step. Not while a step runs.
    public func add(_ interceptor: any Interceptor) { interceptors.append(interceptor) }

    /// Runs one step to completion and returns its output.
    /// - Parameters:
    ///   - task: the registered name of the task every node runs on the parcels.
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
        let run = try StepRun(
            configuration: configuration, registry: tasks, plan: plan, interceptors: interceptors,
            cancellation: cancellation)
        return try run.execute(progress: progress)
    }
}

import Foundation

/// `async` forms of the blocking entry points, for server Swift. Each runs the blocking call on a
/// thread of its own (never on the cooperative pool, which a step would hold for its whole run)
/// and honours the calling task's cancellation the way Ctrl-C does on the command line: the step
/// stops within about 0.2 s and fails as cancelled (its journal, if any, keeps what was
/// aggregated, so it can be retried); a worker shuts down gracefully.
extension Master {
    /// Runs one step to completion and returns its output; cancelling the task cancels the step.
    /// - Parameters:
    ///   - task: the registered name of the task every node runs on the parcels.
    ///   - progress: called about five times a second, on the step's thread.
    /// - Throws: `ElasticFlowError` — as the blocking `run`, and `.cluster("step N cancelled")`
    ///   when the task was cancelled.
    public func run(
        task: String, sources: [DataSource], options: TaskOptions = .init(), step: UInt32 = 1,
        progress: (@Sendable (StepProgress) -> Void)? = nil
    ) async throws(ElasticFlowError) -> StepReport {
        let cancellation = CancellationFlag()
        let plan = StepPlan(step: step, task: task, sources: sources, options: options)
        let planned = PlanTransfer(plan: plan)
        return try await onOwnThread(name: "ef-master-step", cancel: { cancellation.cancel() }) {
            () throws(ElasticFlowError) -> StepReport in
            try self.run(planned.plan, progress: progress, cancellation: cancellation)
        }
    }
}

extension StepQueue {
    /// Runs the pending steps one after another (as the blocking `run`); cancelling the task
    /// cancels the running step and every pending one (the journal keeps them for `retryStep`).
    /// - Returns: true when every step that ran completed.
    public func run(progress: (@Sendable (UInt32, StepProgress) -> Void)? = nil) async -> Bool {
        let result = try? await onOwnThread(
            name: "ef-step-queue",
            cancel: { [self] in
                for status in list() where status.state == .pending || status.state == .running { cancel(status.step) }
            }
        ) { () throws(ElasticFlowError) -> Bool in
            self.run(progress: progress)
        }
        return result ?? false
    }
}

extension Worker {
    /// Starts serving and returns when the worker has stopped: after `shutdown()`, or — when the
    /// calling task is cancelled — after a graceful shutdown (parcels in progress are finished and
    /// answered, then every master gets BYE).
    /// - Throws: `ElasticFlowError` when the address cannot be bound.
    public func run() async throws(ElasticFlowError) {
        try start()
        try await onOwnThread(name: "ef-worker-wait", cancel: { [self] in shutdown() }) {
            () throws(ElasticFlowError) in
            self.wait()
        }
    }
}

/// A plan crossing to the step's thread: built here, used there only.
private struct PlanTransfer: @unchecked Sendable {
    let plan: StepPlan
}

/// Runs `body` on a new thread and waits for it without blocking the cooperative pool; `cancel`
/// is called (once, from any thread) when the calling task is cancelled, even before `body` starts.
func onOwnThread<T: Sendable>(
    name: String, cancel: @escaping @Sendable () -> Void,
    _ body: @escaping @Sendable () throws(ElasticFlowError) -> T
) async throws(ElasticFlowError) -> T {
    let result = await withTaskCancellationHandler {
        await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, ElasticFlowError>, Never>) in
            let thread = Thread {
                continuation.resume(returning: Result { () throws(ElasticFlowError) -> T in try body() })
            }
            thread.name = name
            thread.start()
        }
    } onCancel: {
        cancel()
    }
    return try result.get()
}

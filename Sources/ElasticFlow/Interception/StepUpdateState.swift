/// What a `FlowEvent.stepUpdate` reports about a running step. The raw values are what logs print
/// (`LoggingInterceptor`: `step 1 node-down: …`), so they never change.
///
/// Not to be confused with `StepState`, the states a step's journal record goes through.
public enum StepUpdateState: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Every listed worker (or `minWorkers` of them) is ready; parcels go out.
    case running
    /// The step stopped on an error (the detail says which) or was cancelled.
    case failed
    /// Every receipt closed, no parcel sent twice.
    case completed
    /// Every receipt closed after some parcels were sent again.
    case completedWithRetries = "completed-with-retries"
    /// A worker joined the scheduler (after a reconnect, a join or a silence that ended).
    case nodeUp = "node-up"
    /// A worker is gone or presumed dead; its open receipts go to the others.
    case nodeDown = "node-down"
    /// A worker said BYE: it gets nothing more and answers what it holds.
    case nodeLeaving = "node-leaving"
    /// No worker is left: the master processes the rest itself.
    case masterTakesOver = "master-takes-over"
    /// A parcel unanswered past `parcelTimeout` was sent again elsewhere.
    case parcelOverdue = "parcel-overdue"
    /// A peer sent an unexpected frame and lost its link; the step goes on.
    case linkDropped = "link-dropped"
    /// A worker that joined was refused (version, codec or cookie).
    case joinRefused = "join-refused"
    /// A combined result listed a receipt already aggregated: dropped whole, its other receipts
    /// sent again (the exactly-once rule for combined results).
    case combinedResultDropped = "combined-result-dropped"
    /// A worker's result was refused (wrong step, a receipt never sent to it, more than its
    /// parcels could hold, ...): the node is treated as failed.
    case resultRefused = "result-refused"
    /// A worker failed `excludeAfter` times in the step: it gets nothing more in the step.
    case nodeExcluded = "node-excluded"
    /// No node can run the step yet: the master waits for workers to join (`joinTimeout`).
    case waitingForWorkers = "waiting-for-workers"
    /// A straggling parcel was sent to an idle node as well: the first result wins.
    case speculativeCopy = "speculative-copy"
    /// The step started with `minWorkers` of its listed workers: the others (named in the
    /// detail, with why they are not ready) are tried again and join when they come.
    case workersPending = "workers-pending"
    /// `--compression auto` chose a codec for a link and direction, or changed it; the detail is
    /// the `CompressionChoice` (`parcels -> NODE: zstd:3 from #9 (link 23.9 MB/s, model)`).
    case compressionChosen = "compression-chosen"

    /// The raw value, as logs print it (`node-down`).
    public var description: String { rawValue }
}

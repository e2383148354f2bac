import ElasticFlow

/// The step updates a person must see even without `--verbose`: a master waiting for workers to
/// join, a step started short of its listed workers, a worker excluded from the step, a result
/// refused. One line each on standard error.
struct NoticeInterceptor: Interceptor {
    static let states: Set<StepUpdateState> = [.waitingForWorkers, .workersPending, .nodeExcluded, .resultRefused]

    func stepUpdated(step: UInt32, state: StepUpdateState, detail: String) {
        if Self.states.contains(state) { logLine("elasticflow: step \(step) \(state): \(detail)") }
    }
}

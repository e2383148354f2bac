import ElasticFlow
import Logging

/// The step updates a person must see even without `--verbose`: a master waiting for workers to
/// join, a step started short of its listed workers, a worker excluded from the step, a result
/// refused. Logged at `notice` by the CLI's logger, with the step as metadata.
struct NoticeInterceptor: Interceptor {
    static let states: Set<StepUpdateState> = [.waitingForWorkers, .workersPending, .nodeExcluded, .resultRefused]

    func stepUpdated(step: UInt32, state: StepUpdateState, detail: String) {
        if Self.states.contains(state) {
            LogOptions.cli.notice("step \(step) \(state): \(detail)", metadata: ["step": "\(step)"])
        }
    }
}

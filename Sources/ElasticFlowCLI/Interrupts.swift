import ElasticFlow
import Foundation

/// SIGINT and SIGTERM, taken by a thread of our own (sigwait) so a journaled step can be cancelled
/// cleanly — the journal then records it as cancelled with what was aggregated, and `retry`
/// finishes it — instead of the process dying mid-write. A second signal exits at once (130).
///
/// Create it before any other thread: threads started afterwards inherit the blocked mask.
final class InterruptWatcher: @unchecked Sendable {
    // Guarded by lock.
    private let lock = NSLock()
    private var handler: (@Sendable (Int32) -> Void)?
    private var signalled = false

    init() {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        let blocked = signals
        let waiter = Thread { [self] in
            while true {
                var set = blocked
                var caught: Int32 = 0
                sigwait(&set, &caught)
                let (first, action) = lock.withLock { () -> (Bool, (@Sendable (Int32) -> Void)?) in
                    defer { signalled = true }
                    return (!signalled, handler)
                }
                guard first, let action else {
                    if isatty(STDERR_FILENO) == 1 { ProgressBar.clearLine() }
                    exit(128 + caught)
                }
                action(caught)
            }
        }
        waiter.start()
    }

    /// What a first signal does (without one, a signal exits at once).
    func onSignal(_ action: @escaping @Sendable (Int32) -> Void) {
        lock.withLock { handler = action }
    }
}

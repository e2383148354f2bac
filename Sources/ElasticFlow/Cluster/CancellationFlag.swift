import Foundation

/// Set from any thread to stop a running step: it ends within about 0.2 s as cancelled (its
/// journal, if any, keeps what was aggregated, so `retry` finishes it later).
public final class CancellationFlag: @unchecked Sendable {
    // Guarded by lock.
    private let lock = NSLock()
    private var value = false

    /// A flag that is not set.
    public init() {}

    /// Whether `cancel()` was called. Thread-safe.
    public var isCancelled: Bool { lock.withLock { value } }
    /// Sets the flag; the step that watches it stops at its next check. Thread-safe; calling it again
    /// does nothing more.
    public func cancel() { lock.withLock { value = true } }
}

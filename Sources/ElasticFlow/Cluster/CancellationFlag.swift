import Foundation

/// Set from any thread to stop a running step: it ends within about 0.2 s as cancelled (its
/// journal, if any, keeps what was aggregated, so `retry` finishes it later).
public final class CancellationFlag: @unchecked Sendable {
    // Guarded by lock.
    private let lock = NSLock()
    private var value = false

    public init() {}

    public var isCancelled: Bool { lock.withLock { value } }
    public func cancel() { lock.withLock { value = true } }
}

import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Sees every action of a step as it happens. Every method has a default that does nothing, so an
/// interceptor implements only what it cares about. Called one at a time, in event order, from
/// whichever master thread delivers the step's queued events (the loop thread, a pool thread or
/// the caller's), never under the step's lock; every event of a step is delivered before
/// `Master.run` returns. Keep them quick (a slow one delays its thread's work), and do not call
/// back into the master.
public protocol Interceptor: Sendable {
    /// A node was chosen for the receipt's parcel (`FlowEvent.distributed(_:node:)`).
    func distributed(_ receipt: Receipt, to node: String)
    /// The parcel left for `node`, `bytes` long on the wire (`FlowEvent.sent(_:node:bytes:)`).
    func sent(_ receipt: Receipt, to node: String, bytes: Int)
    /// The parcel's result arrived from `node`, `bytes` long (`FlowEvent.received(_:node:bytes:)`).
    func received(_ receipt: Receipt, from node: String, bytes: Int)
    /// The result was merged into the step's output (`FlowEvent.aggregated(_:)`).
    func aggregated(_ receipt: Receipt)
    /// The receipt closed after `seconds` on `node` (`FlowEvent.taskComplete(_:node:seconds:)`).
    func taskCompleted(_ receipt: Receipt, on node: String, seconds: Double)
    /// The step changed state (`FlowEvent.stepUpdate(step:state:detail:)`).
    func stepUpdated(step: UInt32, state: StepUpdateState, detail: String)
}

extension Interceptor {
    /// Does nothing.
    public func distributed(_ receipt: Receipt, to node: String) {}
    /// Does nothing.
    public func sent(_ receipt: Receipt, to node: String, bytes: Int) {}
    /// Does nothing.
    public func received(_ receipt: Receipt, from node: String, bytes: Int) {}
    /// Does nothing.
    public func aggregated(_ receipt: Receipt) {}
    /// Does nothing.
    public func taskCompleted(_ receipt: Receipt, on node: String, seconds: Double) {}
    /// Does nothing.
    public func stepUpdated(step: UInt32, state: StepUpdateState, detail: String) {}

    /// Dispatches an event to the matching method.
    public func intercept(_ event: FlowEvent) {
        switch event {
        case .distributed(let r, let node): distributed(r, to: node)
        case .sent(let r, let node, let bytes): sent(r, to: node, bytes: bytes)
        case .received(let r, let node, let bytes): received(r, from: node, bytes: bytes)
        case .aggregated(let r): aggregated(r)
        case .taskComplete(let r, let node, let seconds): taskCompleted(r, on: node, seconds: seconds)
        case .stepUpdate(let step, let state, let detail): stepUpdated(step: step, state: state, detail: detail)
        }
    }
}

/// Publishes events as an `AsyncSequence` (`events`), for consumers that prefer `for await`.
/// Buffers without bound so the master never waits on a slow consumer.
public final class EventStream: Interceptor {
    /// Every event of the steps this stream is added to, in order; ends after `finish()`.
    public let events: AsyncStream<FlowEvent>
    private let continuation: AsyncStream<FlowEvent>.Continuation

    /// A stream with an unbounded buffer; add it to a master with `Master.add(_:)`.
    public init() {
        (events, continuation) = AsyncStream.makeStream(of: FlowEvent.self, bufferingPolicy: .unbounded)
    }

    /// Yields `FlowEvent.distributed(_:node:)`.
    public func distributed(_ receipt: Receipt, to node: String) {
        continuation.yield(.distributed(receipt, node: node))
    }
    /// Yields `FlowEvent.sent(_:node:bytes:)`.
    public func sent(_ receipt: Receipt, to node: String, bytes: Int) {
        continuation.yield(.sent(receipt, node: node, bytes: bytes))
    }
    /// Yields `FlowEvent.received(_:node:bytes:)`.
    public func received(_ receipt: Receipt, from node: String, bytes: Int) {
        continuation.yield(.received(receipt, node: node, bytes: bytes))
    }
    /// Yields `FlowEvent.aggregated(_:)`.
    public func aggregated(_ receipt: Receipt) { continuation.yield(.aggregated(receipt)) }
    /// Yields `FlowEvent.taskComplete(_:node:seconds:)`.
    public func taskCompleted(_ receipt: Receipt, on node: String, seconds: Double) {
        continuation.yield(.taskComplete(receipt, node: node, seconds: seconds))
    }
    /// Yields `FlowEvent.stepUpdate(step:state:detail:)`.
    public func stepUpdated(step: UInt32, state: StepUpdateState, detail: String) {
        continuation.yield(.stepUpdate(step: step, state: state, detail: detail))
    }

    /// Ends the sequence (after the step, when nothing more will come).
    public func finish() { continuation.finish() }
}

/// The example interceptor: one log event per step event through a swift-log `Logger`, the
/// message the event's description prefixed with the time since the interceptor was created
/// (`[0.123s] distributed 1/1/0@0+4194304:... -> master`), the metadata `FlowEvent.logMetadata`
/// (`step`, `receipt`, `node`) and the level `FlowEvent.logLevel` (`info`, `warning` for a node
/// lost or a result refused, `error` for a failed step).
public struct LoggingInterceptor: Interceptor {
    private let start: timespec
    private let verbose: Bool
    private let logger: Logger

    /// - Parameters:
    ///   - verbose: log every parcel event; otherwise only step updates and task completions.
    ///   - logger: where the events go; by default `elasticflow.events` through the process's
    ///     logging system (swift-log's default writes to standard error).
    public init(verbose: Bool = true, logger: Logger = Logger(label: "elasticflow.events")) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        start = now
        self.verbose = verbose
        self.logger = logger
    }

    private func log(_ event: FlowEvent) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let elapsed = Double(now.tv_sec - start.tv_sec) + Double(now.tv_nsec - start.tv_nsec) / 1e9
        logger.log(level: event.logLevel, "[\(format3(elapsed))s] \(event)", metadata: event.logMetadata)
    }

    /// Logs the event when verbose.
    public func distributed(_ receipt: Receipt, to node: String) {
        if verbose { log(.distributed(receipt, node: node)) }
    }
    /// Logs the event when verbose.
    public func sent(_ receipt: Receipt, to node: String, bytes: Int) {
        if verbose { log(.sent(receipt, node: node, bytes: bytes)) }
    }
    /// Logs the event when verbose.
    public func received(_ receipt: Receipt, from node: String, bytes: Int) {
        if verbose { log(.received(receipt, node: node, bytes: bytes)) }
    }
    /// Logs the event when verbose.
    public func aggregated(_ receipt: Receipt) { if verbose { log(.aggregated(receipt)) } }
    /// Logs the event, verbose or not.
    public func taskCompleted(_ receipt: Receipt, on node: String, seconds: Double) {
        log(.taskComplete(receipt, node: node, seconds: seconds))
    }
    /// Logs the event, verbose or not.
    public func stepUpdated(step: UInt32, state: StepUpdateState, detail: String) {
        log(.stepUpdate(step: step, state: state, detail: detail))
    }
}

/// Three decimals without Foundation.
func format3(_ value: Double) -> String {
    let millis = Int((value * 1000).rounded())
    let fraction = String(millis % 1000)
    return "\(millis / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
}

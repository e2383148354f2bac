import Logging

extension FlowEvent {
    /// The event's swift-log metadata: `step`, and `receipt` and `node` where it has them (a
    /// receipt in its printable form, `STEP/SEQUENCE/PARTITION@OFFSET+LENGTH:ITEMS#CHECKSUM`).
    public var logMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [:]
        switch self {
        case .distributed(let r, let node), .sent(let r, let node, _), .received(let r, let node, _),
            .taskComplete(let r, let node, _):
            metadata["step"] = "\(r.step)"
            metadata["receipt"] = "\(r)"
            metadata["node"] = "\(node)"
        case .aggregated(let r):
            metadata["step"] = "\(r.step)"
            metadata["receipt"] = "\(r)"
        case .stepUpdate(let step, let state, _):
            metadata["step"] = "\(step)"
            metadata["state"] = "\(state.rawValue)"
        }
        return metadata
    }

    /// How severe the event is for a log: `error` for a failed step; `warning` for a node lost,
    /// excluded or refused, a parcel overdue, a link dropped or a result refused; `info` otherwise.
    public var logLevel: Logger.Level {
        guard case .stepUpdate(_, let state, _) = self else { return .info }
        switch state {
        case .failed: return .error
        case .nodeDown, .nodeExcluded, .parcelOverdue, .linkDropped, .joinRefused, .resultRefused,
            .combinedResultDropped:
            return .warning
        default: return .info
        }
    }
}

/// The master's own record of a step's events, in its `Logger`: step updates at `debug`, parcel
/// events at `trace`, each with `FlowEvent.logMetadata`. Added by the master only when its logger
/// logs at `debug` or below, so the default costs nothing per parcel.
struct MasterEventLog: Interceptor {
    let logger: Logger

    func distributed(_ receipt: Receipt, to node: String) { trace(.distributed(receipt, node: node)) }
    func sent(_ receipt: Receipt, to node: String, bytes: Int) { trace(.sent(receipt, node: node, bytes: bytes)) }
    func received(_ receipt: Receipt, from node: String, bytes: Int) {
        trace(.received(receipt, node: node, bytes: bytes))
    }
    func aggregated(_ receipt: Receipt) { trace(.aggregated(receipt)) }
    func taskCompleted(_ receipt: Receipt, on node: String, seconds: Double) {
        trace(.taskComplete(receipt, node: node, seconds: seconds))
    }
    func stepUpdated(step: UInt32, state: StepUpdateState, detail: String) {
        let event = FlowEvent.stepUpdate(step: step, state: state, detail: detail)
        logger.debug("\(event)", metadata: event.logMetadata)
    }

    private func trace(_ event: FlowEvent) {
        if logger.logLevel <= .trace { logger.trace("\(event)", metadata: event.logMetadata) }
    }
}

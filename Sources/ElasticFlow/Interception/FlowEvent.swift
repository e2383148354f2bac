/// What happens to a step and its parcels, in order. For each receipt: `distributed` (a node is
/// chosen), `sent` (its bytes are on the way, or handed to the master's own threads), `received`
/// (its result is back), `aggregated` (merged into the step's output), `taskComplete` (the receipt
/// is closed). `stepUpdate` reports step state changes.
public enum FlowEvent: Sendable, Hashable, CustomStringConvertible {
    /// The scheduler chose `node` (a worker's address, or `master`) for the receipt's parcel.
    case distributed(Receipt, node: String)
    /// The parcel left for `node`: `bytes` on the wire (compressed), or handed to the master's threads.
    case sent(Receipt, node: String, bytes: Int)
    /// The parcel's result came back from `node`: `bytes` as received (compressed).
    case received(Receipt, node: String, bytes: Int)
    /// The result was merged into the step's output.
    case aggregated(Receipt)
    /// The receipt is closed: its parcel was processed on `node` in `seconds` (from sending to the
    /// result's arrival).
    case taskComplete(Receipt, node: String, seconds: Double)
    /// The step changed state (`StepUpdateState`); `detail` says more, or is empty.
    case stepUpdate(step: UInt32, state: StepUpdateState, detail: String)

    /// The receipt the event is about, if any.
    public var receipt: Receipt? {
        switch self {
        case .distributed(let r, _), .sent(let r, _, _), .received(let r, _, _), .aggregated(let r),
            .taskComplete(let r, _, _):
            return r
        case .stepUpdate:
            return nil
        }
    }

    /// One line: the event's name, the receipt's printable form and its details
    /// (`distributed 1/1/0@0+4194304:... -> master`).
    public var description: String {
        switch self {
        case .distributed(let r, let node): return "distributed \(r) -> \(node)"
        case .sent(let r, let node, let bytes): return "sent \(r) -> \(node) (\(bytes) bytes)"
        case .received(let r, let node, let bytes): return "received \(r) <- \(node) (\(bytes) bytes)"
        case .aggregated(let r): return "aggregated \(r)"
        case .taskComplete(let r, let node, let seconds):
            return "task-complete \(r) on \(node) in \(Int(seconds * 1000)) ms"
        case .stepUpdate(let step, let state, let detail):
            return "step \(step) \(state)" + (detail.isEmpty ? "" : ": \(detail)")
        }
    }
}

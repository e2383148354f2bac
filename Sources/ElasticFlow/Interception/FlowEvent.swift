/// What happens to a step and its parcels, in order. For each receipt: `distributed` (a node is
/// chosen), `sent` (its bytes are on the way, or handed to the master's own threads), `received`
/// (its result is back), `aggregated` (merged into the step's output), `taskComplete` (the receipt
/// is closed). `stepUpdate` reports step state changes.
public enum FlowEvent: Sendable, Hashable, CustomStringConvertible {
    case distributed(Receipt, node: String)
    case sent(Receipt, node: String, bytes: Int)
    case received(Receipt, node: String, bytes: Int)
    case aggregated(Receipt)
    case taskComplete(Receipt, node: String, seconds: Double)
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

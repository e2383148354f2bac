/// What a step did: parcels and receipts, retries, bytes before and after compression, time.
public struct StepSummary: Sendable, CustomStringConvertible {
    public var step: UInt32 = 0
    public var task = ""
    /// Parcels cut from the sources.
    public var parcels = 0
    /// Receipts closed (results aggregated); equals `parcels` for a completed step.
    public var receiptsClosed = 0
    /// Parcels sent again after a node failed or went down.
    public var retries = 0
    /// Results dropped because their receipt was already closed.
    public var duplicates = 0
    /// ERROR answers from tasks.
    public var taskErrors = 0
    /// Bytes read from the sources.
    public var bytes: UInt64 = 0
    /// Parcel bytes sent to workers, before and after compression (retries included).
    public var bytesSentRaw: UInt64 = 0
    public var bytesSentWire: UInt64 = 0
    /// Result bytes received from workers, as they crossed the wire.
    public var bytesReceivedWire: UInt64 = 0
    public var seconds = 0.0
    /// Parcels whose result each node produced (the master is "master").
    public var parcelsByNode: [String: Int] = [:]
    public var compression: Compression = .none
    /// Faults injected and recovered, when chaos was on.
    public var chaos: ChaosReport?
    /// Results that covered several receipts (worker-side combining).
    public var combinedResults = 0
    /// Shared-input mode: the workers read the sources themselves (no parcel byte was sent).
    public var sharedInput = false
    /// Results refused (their node treated as failed).
    public var refusedResults = 0
    /// Nodes excluded from the step, with why.
    public var excluded: [String: String] = [:]
    /// Speculative copies of straggling parcels sent, and how many of them answered first.
    public var speculativeCopies = 0
    public var speculativeWins = 0

    public init() {}

    /// Source bytes per second.
    public var throughput: Double { seconds > 0 ? Double(bytes) / seconds : 0 }

    public var description: String {
        let mb = { (value: UInt64) in format3(Double(value) / 1e6) }
        var lines = [
            "step \(step) (\(task)): \(receiptsClosed)/\(parcels) receipts closed, \(retries) retries, "
                + "\(duplicates) duplicates dropped, \(taskErrors) task errors",
            "  \(mb(bytes)) MB in \(format3(seconds)) s = \(format3(throughput / 1e6)) MB/s",
        ]
        if bytesSentRaw > 0 {
            let ratio = bytesSentWire > 0 ? Double(bytesSentRaw) / Double(bytesSentWire) : 0
            lines.append(
                "  sent \(mb(bytesSentRaw)) MB as \(mb(bytesSentWire)) MB with \(compression) "
                    + "(ratio \(format3(ratio))), results \(mb(bytesReceivedWire)) MB")
        }
        if sharedInput {
            lines.append(
                "  shared input: receipts only on the wire (\(mb(bytesSentWire)) MB), results \(mb(bytesReceivedWire)) MB"
            )
        }
        if combinedResults > 0 { lines.append("  \(combinedResults) combined results (several receipts each)") }
        if let chaos { lines.append("  chaos (injected/recovered): \(chaos)") }
        if refusedResults > 0 { lines.append("  \(refusedResults) results refused") }
        for (node, why) in excluded.sorted(by: { $0.key < $1.key }) { lines.append("  excluded \(node): \(why)") }
        if speculativeCopies > 0 {
            lines.append("  \(speculativeCopies) speculative copies of stragglers, \(speculativeWins) answered first")
        }
        let nodes = parcelsByNode.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
        lines.append("  parcels by node: \(nodes)")
        return lines.joined(separator: "\n")
    }
}

/// A step's output and its summary.
public struct StepReport: Sendable {
    public let output: StepOutput
    public let summary: StepSummary

    public init(output: StepOutput, summary: StepSummary) {
        self.output = output
        self.summary = summary
    }
}

/// Progress of a running step, for progress bars.
public struct StepProgress: Sendable {
    public var bytesDone: UInt64
    /// Total source bytes when known (regular files), nil for streams.
    public var bytesTotal: UInt64?
    public var parcelsDone: Int
    public var parcelsCut: Int
    public var seconds: Double
}

/// What a step did: parcels and receipts, retries, bytes before and after compression, time.
public struct StepSummary: Sendable, CustomStringConvertible {
    /// The step's number.
    public var step: UInt32 = 0
    /// The registered name of the task.
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
    /// Parcel bytes sent to workers after compression (retries included), as they crossed the wire.
    public var bytesSentWire: UInt64 = 0
    /// Result bytes received from workers, as they crossed the wire.
    public var bytesReceivedWire: UInt64 = 0
    /// Wall-clock seconds from the step's start to its end.
    public var seconds = 0.0
    /// Parcels whose result each node produced (the master is "master").
    public var parcelsByNode: [String: Int] = [:]
    /// The codec parcels and results crossed the wire with.
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
    /// Speculative copies whose result arrived before the original's.
    public var speculativeWins = 0
    /// Parcels sent uncompressed because compressing did not make them smaller by the margin
    /// (3%; any compression setting).
    public var incompressibleParcels = 0
    /// `--compression auto`: every codec chosen per link and direction, in order (empty otherwise).
    public var compressionChoices: [CompressionChoice] = []

    /// An empty summary (every count 0); the master fills one in as a step runs.
    public init() {}

    /// Source bytes per second.
    public var throughput: Double { seconds > 0 ? Double(bytes) / seconds : 0 }

    /// The lines `--summary` prints: receipts, retries and duplicates; MB and MB/s; bytes sent and
    /// the ratio; then combining, chaos, refusals, exclusions and speculation when any happened; and the
    /// parcels each node processed.
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
        if incompressibleParcels > 0 {
            lines.append("  \(incompressibleParcels) parcels sent uncompressed (they did not compress)")
        }
        for choice in compressionChoices { lines.append("  compression \(choice)") }
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
    /// What the step computed.
    public let output: StepOutput
    /// How the step went.
    public let summary: StepSummary

    /// A report of `output` and `summary`.
    public init(output: StepOutput, summary: StepSummary) {
        self.output = output
        self.summary = summary
    }
}

/// Progress of a running step, for progress bars.
public struct StepProgress: Sendable {
    /// Source bytes cut into parcels so far.
    public var bytesDone: UInt64
    /// Total source bytes when known (regular files), nil for streams.
    public var bytesTotal: UInt64?
    /// Receipts closed so far.
    public var parcelsDone: Int
    /// Parcels cut so far.
    public var parcelsCut: Int
    /// Seconds since the step began.
    public var seconds: Double
}

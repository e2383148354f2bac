import Foundation

/// Worker-side combining for one step of one master (Spark's map-side combine): finished parcels'
/// results fold into one aggregation, answered as a single RESULT that lists every receipt it
/// covers. A batch is answered when it holds `maxReceipts` results, when its results reach
/// `byteLimit`, when it has waited `maxDelay`, or — the usual case — as soon as fewer parcels of
/// the step are left on this worker than it has threads, so the master is asked for more work
/// before a thread goes idle. The master applies a combined result all or nothing (exactly once
/// per receipt, docs/reliability.md).
final class ResultCombiner: @unchecked Sendable {
    // Everything below `lock` is guarded by it; the rest is immutable.
    let settings: CombineSettings
    let threads: Int
    let task: any ParcelTask
    let options: TaskOptions
    /// Results (uncompressed) past which a batch is answered whatever its count.
    let byteLimit: Int

    private let lock = NSLock()
    private var outstanding = 0
    private var entries: [ResultEnvelope.Entry] = []
    private var first: [UInt8]?
    private var aggregation: (any TaskAggregation)?
    private var bytes = 0
    /// When the pending batch got its first result (monotonic seconds), nil when empty.
    private var pendingSince: Double?

    /// What leaves in one RESULT.
    enum Batch {
        /// One parcel's result, as the task produced it.
        case single(ResultEnvelope.Entry, [UInt8])
        /// Several results folded into an aggregation (its snapshot is sent).
        case combined([ResultEnvelope.Entry], any TaskAggregation)

        var entries: [ResultEnvelope.Entry] {
            switch self {
            case .single(let entry, _): return [entry]
            case .combined(let entries, _): return entries
            }
        }
    }

    init(settings: CombineSettings, threads: Int, task: any ParcelTask, options: TaskOptions, byteLimit: Int = 32 << 20)
    {
        self.settings = settings
        self.threads = max(1, threads)
        self.task = task
        self.options = options
        self.byteLimit = byteLimit
    }

    /// A parcel of the step arrived (loop thread).
    func accepted() { lock.withLock { outstanding += 1 } }

    /// A parcel was answered on its own (an error, or a result sent alone).
    /// - Returns: the pending batch when it should leave now.
    func finishedAlone() -> Batch? {
        lock.withLock {
            outstanding -= 1
            return !entries.isEmpty && outstanding < threads ? take() : nil
        }
    }

    /// Adds a finished parcel's result.
    /// - Parameter flush: answer the batch now whatever its size.
    /// - Returns: the batch to send now, if any (a batch left waiting is sent by `takeExpired`,
    ///   which the worker's loop calls every few milliseconds).
    /// - Throws: what the task's aggregation throws; the result is then not in the batch.
    func add(_ entry: ResultEnvelope.Entry, result: [UInt8], flush: Bool) throws -> Batch? {
        try lock.withLock { () throws -> Batch? in
            // (`outstanding` drops only once the result is in: a result that throws is answered
            // alone, and `finishedAlone` counts it then.)
            if entries.isEmpty {
                first = result
                pendingSince = monotonicSeconds()
            } else {
                if aggregation == nil {
                    let fresh = try task.makeAggregation(options: options)
                    try fresh.absorb(first!)
                    first = nil
                    aggregation = fresh
                }
                try aggregation!.absorb(result)
            }
            outstanding -= 1
            entries.append(entry)
            bytes += result.count
            let due =
                flush || entries.count >= settings.maxReceipts || bytes >= byteLimit || outstanding < threads
            return due ? take() : nil
        }
    }

    /// The pending batch if it has waited `maxDelay` by `now`.
    func takeExpired(now: Double) -> Batch? {
        lock.withLock {
            guard let since = pendingSince, now - since >= settings.maxDelay.inSeconds, !entries.isEmpty else {
                return nil
            }
            return take()
        }
    }

    /// Under lock.
    private func take() -> Batch {
        defer {
            entries = []
            first = nil
            aggregation = nil
            bytes = 0
            pendingSince = nil
        }
        if let aggregation { return .combined(entries, aggregation) }
        return .single(entries[0], first!)
    }
}

import Foundation

/// Worker-side combining for one step of one master (Spark's map-side combine): finished parcels'
/// results fold into one aggregate, answered as a single RESULT that lists every receipt it
/// covers. A batch is answered when it holds `maxReceipts` results, when its results reach
/// `byteLimit`, when it has waited `maxDelay`, or — the usual case — as soon as fewer parcels of
/// the step are left on this worker than it has threads, so the master is asked for more work
/// before a thread goes idle. The master applies a combined result all or nothing (exactly once
/// per receipt, docs/reliability.md).
///
/// Two ways in:
/// - A task that accumulates (`AccumulatingTask`, the word count) processes each parcel straight
///   into a running aggregate: a thread checks one out (`checkOut`), adds its parcel to it outside
///   the lock and checks it in with the parcel's entry (`checkIn`). Each thread works on its own,
///   so a batch is one aggregate: with several threads, several batches may be pending at once.
/// - Any other task's results arrive serialized (`add`) and are absorbed into the one pending
///   batch's aggregation.
final class ResultCombiner: @unchecked Sendable {
    // Everything below `lock` is guarded by it; the rest is immutable.
    let settings: CombineSettings
    let threads: Int
    let task: any ParcelTask
    let options: TaskOptions
    /// Results (uncompressed) past which a batch is answered whatever its count.
    let byteLimit: Int
    /// The task, when it accumulates (then `checkOut`/`checkIn`, not `add`).
    let accumulating: (any AccumulatingTask)?

    private let lock = NSLock()
    private var outstanding = 0
    // The serialized way's one pending batch.
    private var entries: [ResultEnvelope.Entry] = []
    private var first: [UInt8]?
    private var aggregation: (any TaskAggregation)?
    private var bytes = 0
    /// When the pending batch got its first result (monotonic seconds), nil when empty.
    private var pendingSince: Double?
    // The accumulating way: aggregates not checked out (some holding entries), and empty ones.
    private var idle: [Accumulation] = []
    private var spare: [any TaskAccumulator] = []

    /// What leaves in one RESULT.
    enum Batch {
        /// One parcel's result, as the task produced it.
        case single(ResultEnvelope.Entry, [UInt8])
        /// Several results folded into an aggregation (its snapshot is sent).
        case combined([ResultEnvelope.Entry], any TaskAggregation)
        /// Parcels processed into one accumulator (its serialization is sent; one entry: as a
        /// single result). Give the accumulator back with `recycle` once it is encoded.
        case accumulated([ResultEnvelope.Entry], any TaskAccumulator)

        var entries: [ResultEnvelope.Entry] {
            switch self {
            case .single(let entry, _): return [entry]
            case .combined(let entries, _), .accumulated(let entries, _): return entries
            }
        }
    }

    /// A running aggregate and the parcels it holds; owned by one thread while checked out.
    final class Accumulation {
        let accumulator: any TaskAccumulator
        fileprivate(set) var entries: [ResultEnvelope.Entry] = []
        fileprivate var since: Double?
        /// An upper bound of its serialized size: exact when last measured, plus the parcel
        /// bytes added since (a table is never larger than about the text it counts).
        fileprivate var sizeBound = 0

        fileprivate init(_ accumulator: any TaskAccumulator) { self.accumulator = accumulator }
    }

    init(settings: CombineSettings, threads: Int, task: any ParcelTask, options: TaskOptions, byteLimit: Int = 32 << 20)
    {
        self.settings = settings
        self.threads = max(1, threads)
        self.task = task
        self.options = options
        self.byteLimit = byteLimit
        accumulating = task as? any AccumulatingTask
    }

    /// A parcel of the step arrived (loop thread).
    func accepted() { lock.withLock { outstanding += 1 } }

    /// A parcel was answered on its own (an error, or a result sent alone).
    /// - Returns: the pending batches that should leave now.
    func finishedAlone() -> [Batch] {
        lock.withLock {
            outstanding -= 1
            return outstanding < threads ? takeAll() : []
        }
    }

    /// Adds a finished parcel's serialized result.
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
            return due ? takeSerialized() : nil
        }
    }

    /// An aggregate to process a parcel into (accumulating tasks): the pending one that waited
    /// longest, else an empty one. The caller adds the parcel outside any lock, then calls
    /// `checkIn`, or `drop` if adding threw.
    func checkOut() throws -> Accumulation {
        let (reused, empty) = lock.withLock { () -> (Accumulation?, (any TaskAccumulator)?) in
            if !idle.isEmpty { return (idle.removeFirst(), nil) }
            return (nil, spare.popLast())
        }
        if let reused { return reused }
        if let empty { return Accumulation(empty) }
        return Accumulation(try accumulating!.makeAccumulator(options: options))
    }

    /// The parcel of `entry` was added to `accumulation`.
    /// - Parameters:
    ///   - parcelBytes: the parcel's size (for the batch's size bound).
    ///   - flush: answer the batch now whatever its size.
    /// - Returns: the batches to send now (this one when due, and every other pending one when
    ///   this worker runs short of parcels).
    func checkIn(_ accumulation: Accumulation, entry: ResultEnvelope.Entry, parcelBytes: Int, flush: Bool) -> [Batch] {
        // Measured outside the lock (a pass over the table) when the bound says it may be due.
        var bound = accumulation.sizeBound + parcelBytes
        if bound >= byteLimit { bound = accumulation.accumulator.serializedSize }
        return lock.withLock {
            outstanding -= 1
            accumulation.entries.append(entry)
            accumulation.sizeBound = bound
            if accumulation.since == nil { accumulation.since = monotonicSeconds() }
            var due: [Batch] = []
            if flush || accumulation.entries.count >= settings.maxReceipts || bound >= byteLimit {
                due.append(.accumulated(accumulation.entries, accumulation.accumulator))
            } else {
                idle.append(accumulation)
            }
            if outstanding < threads { due += takeAll() }
            return due
        }
    }

    /// Adding a parcel to `accumulation` threw: it is dropped, and with it the parcels it held
    /// before, which the caller answers as failed (the master sends them again, alone). The
    /// parcel that threw is answered alone too (`finishedAlone`).
    /// - Returns: the entries it held before.
    func drop(_ accumulation: Accumulation) -> [ResultEnvelope.Entry] { accumulation.entries }

    /// An accumulator whose batch was encoded, emptied for another batch.
    func recycle(_ accumulator: any TaskAccumulator) {
        accumulator.clear()
        lock.withLock { if spare.count < threads { spare.append(accumulator) } }
    }

    /// The pending batches that have waited `maxDelay` by `now`.
    func takeExpired(now: Double) -> [Batch] {
        lock.withLock {
            var expired: [Batch] = []
            if let since = pendingSince, now - since >= settings.maxDelay.inSeconds, !entries.isEmpty {
                expired.append(takeSerialized())
            }
            idle.removeAll { accumulation in
                guard let since = accumulation.since, now - since >= settings.maxDelay.inSeconds else { return false }
                expired.append(.accumulated(accumulation.entries, accumulation.accumulator))
                return true
            }
            return expired
        }
    }

    /// Under lock: every pending batch.
    private func takeAll() -> [Batch] {
        var all: [Batch] = entries.isEmpty ? [] : [takeSerialized()]
        for accumulation in idle where !accumulation.entries.isEmpty {
            all.append(.accumulated(accumulation.entries, accumulation.accumulator))
        }
        idle.removeAll()
        return all
    }

    /// Under lock: the serialized way's pending batch.
    private func takeSerialized() -> Batch {
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

import Synchronization

/// The built-in word count, run entirely by the C core (`ef_counter_*`): each parcel is counted
/// into a hash-partitioned table, sent serialized, and the master merges the tables. Words are
/// runs of non-whitespace bytes; `TaskOptions.lowercase` folds ASCII letters. The step's output
/// is `.wordCount(counter)`.
public struct WordCountTask: ParcelTask {
    /// Hash partitions of the count tables (1...1024).
    public let partitions: Int
    private let pool: CounterPool

    /// - Parameter partitions: hash partitions of the tables (1...1024; another value makes
    ///   `process` and `makeAggregation` throw `ElasticFlowError.invalidArgument`).
    public init(partitions: Int = 16) {
        self.partitions = partitions
        pool = CounterPool(limit: WordCountOptions.onlineCores)
    }

    /// Counts the parcel's words in place (`ef_counter_feed`, `ef_counter_finish`).
    /// - Returns: the table serialized by partition (`ef_counter_serialize_partitioned`), so the
    ///   master can merge it on several threads.
    public func process(_ parcel: ParcelBytes, options: TaskOptions) throws -> [UInt8] {
        let transfer = try pool.take(
            partitions: partitions, lowercase: options.lowercase, maxWordSize: options.maxWordSize ?? 0)
        let counter = transfer.counter
        let serialized = try parcel.withUnsafeBytes { (buffer) throws(ElasticFlowError) -> [UInt8] in
            try counter.feed(buffer)
            try counter.finish()
            return try counter.serializedPartitioned()
        }
        // A counter that threw above is dropped rather than pooled: its state is unknown.
        counter.removeAll()
        pool.give(transfer)
        return serialized
    }

    /// An aggregation that merges each parcel's count table into one `WordCounter` (16 partitions,
    /// lowercased when `options.lowercase`), large tables in parallel.
    public func makeAggregation(options: TaskOptions) throws -> any TaskAggregation {
        try WordCountAggregation(counter: WordCounter(partitions: partitions, lowercase: options.lowercase))
    }
}

extension WordCountTask: AccumulatingTask {
    /// A table that parcels are counted into one after another (the worker's combining).
    func makeAccumulator(options: TaskOptions) throws -> any TaskAccumulator {
        WordCountAccumulator(
            counter: try WordCounter(
                partitions: partitions, lowercase: options.lowercase, maxWordSize: options.maxWordSize ?? 0))
    }
}

/// Several parcels counted into one table: each parcel is fed and finished (a parcel ends at a
/// word boundary), so the table holds exactly the sum of the parcels' own tables.
final class WordCountAccumulator: TaskAccumulator {
    let counter: WordCounter

    init(counter: WordCounter) {
        self.counter = counter
    }

    func add(_ parcel: ParcelBytes) throws {
        try parcel.withUnsafeBytes { (buffer) throws(ElasticFlowError) in
            try counter.feed(buffer)
            try counter.finish()
        }
    }

    var serializedSize: Int { counter.partitionedSize }

    func serialized() throws -> [UInt8] { try counter.serializedPartitioned() }

    func clear() { counter.removeAll() }
}

/// Counters kept between parcels: a table sized for a parcel's vocabulary is reused instead of
/// being allocated and grown again for every parcel. At most `limit` idle counters per kind.
final class CounterPool: Sendable {
    private struct Idle {
        var plain: [CounterTransfer] = []
        var lowercase: [CounterTransfer] = []
    }

    private let limit: Int
    private let idle = Mutex(Idle())

    init(limit: Int) {
        self.limit = limit
    }

    /// An idle counter of the right kind, else a new one. The caller owns it until `give`.
    func take(partitions: Int, lowercase: Bool, maxWordSize: Int = 0) throws(ElasticFlowError) -> CounterTransfer {
        let reused = idle.withLock { idle in
            lowercase ? idle.lowercase.popLast() : idle.plain.popLast()
        }
        if let reused, reused.counter.partitions == partitions, reused.counter.maxWordSize == maxWordSize {
            return reused
        }
        return CounterTransfer(
            counter: try WordCounter(partitions: partitions, lowercase: lowercase, maxWordSize: maxWordSize))
    }

    /// Returns an empty counter to the pool (freed when the pool is full).
    func give(_ transfer: CounterTransfer) {
        let lowercase = transfer.counter.lowercases
        idle.withLock { idle in
            if lowercase {
                if idle.lowercase.count < limit { idle.lowercase.append(transfer) }
            } else {
                if idle.plain.count < limit { idle.plain.append(transfer) }
            }
        }
    }

    /// Idle counters, for tests.
    var idleCount: Int { idle.withLock { $0.plain.count + $0.lowercase.count } }
}

/// The master side of a `WordCountTask`: one table, into which every result merges. A large
/// result merges partition by partition on every core at once (`WordCounter.mergeInParallel`).
final class WordCountAggregation: InPlaceAggregation, CheckedAggregation {
    let counter: WordCounter
    let threads = WordCountOptions.onlineCores

    init(counter: WordCounter) {
        self.counter = counter
    }

    /// Merges a serialized table; a malformed one adds nothing.
    func absorb(_ result: [UInt8]) throws {
        try counter.mergeInParallel(serialized: result, threads: threads)
    }

    func output() throws -> StepOutput {
        .wordCount(counter)
    }

    func snapshot() throws -> [UInt8] { try counter.serializedPartitioned() }

    func restore(from snapshot: [UInt8]) throws { try counter.mergeInParallel(serialized: snapshot, threads: threads) }

    /// A table from a worker: well-formed (`ef_counter_table_bounds`), no more words than the
    /// bytes its parcels hold (a word takes at least one byte; every count is at least 1 by the
    /// format), no word longer than its longest parcel, counts whose sum fits in 64 bits; and the
    /// aggregate plus it must fit too (else a true overflow, an error of the step).
    func absorb(bytes result: UnsafeRawBufferPointer, combined: Bool, checkedAgainst limits: ResultLimits) throws {
        let bounds: WordCounter.TableBounds
        do {
            bounds = try WordCounter.bounds(ofSerialized: result)
        } catch .core(let code, _) where code == .overflow {
            throw ResultRefusal(reason: "has counts that sum past 2^64 - 1")
        } catch {
            throw ResultRefusal(reason: "is not a count table (\(error))")
        }
        if bounds.total > limits.bytes {
            throw ResultRefusal(reason: "counts \(bounds.total) words in \(limits.bytes) bytes of parcels")
        }
        if bounds.longest > limits.longestParcel {
            throw ResultRefusal(
                reason: "has a word of \(bounds.longest) bytes, longer than its parcel (\(limits.longestParcel) bytes)")
        }
        do throws(ElasticFlowError) {
            try counter.mergeInParallel(serialized: result, threads: threads, total: bounds.total)
        } catch {
            // A key outside its EFCP section's partition, say: the merge checks before it adds,
            // so nothing was merged, and the fault is the table's. A true overflow or a lack of
            // memory is the step's.
            guard case .core(let code, _) = error, code != .overflow, code != .outOfMemory else { throw error }
            throw ResultRefusal(reason: "is not a count table (\(code))")
        }
    }

    /// Both a parcel's table and a worker's combined snapshot are serialized tables: one merge.
    func absorb(bytes: UnsafeRawBufferPointer, combined: Bool) throws {
        try counter.mergeInParallel(serialized: bytes, threads: threads)
    }
}

/// An aggregation that takes a result where it lies (a pool thread's decompression buffer), with
/// no copy into an array: the master merges remote results this way when it can.
protocol InPlaceAggregation: TaskAggregation {
    /// `absorb` (or, when `combined`, `restore(from:)`) on bytes valid for the call only.
    func absorb(bytes: UnsafeRawBufferPointer, combined: Bool) throws
}

import Foundation

/// A step's aggregate: merges results into the task's aggregation, keeps the set of receipts it
/// holds, and writes the journal's checkpoints of both.
///
/// It has a lock of its own, never nested with the step lock: a result first closes its receipt
/// under the step lock (exactly once), and is then merged here with no other lock held, so
/// scheduling and other results go on during a merge. A checkpoint takes the snapshot and the set
/// at one instant under this lock, and writes (fsyncs) them after letting go of it.
final class ResultAggregator: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = NSLock()
    private let aggregation: any TaskAggregation
    /// The receipts whose results the aggregate holds.
    private var aggregated: Set<UInt64>
    private var sinceCheckpoint = 0
    /// Only the caller's thread checkpoints; it alone reads and writes this.
    private var lastCheckpoint = monotonicSeconds()
    private let journal: StepJournalWriter?
    private let taskName: String

    init(plan: StepPlan, task: any ParcelTask) throws(ElasticFlowError) {
        do {
            aggregation = try task.makeAggregation(options: plan.options)
            if let restored = plan.restoredAggregate { try aggregation.restore(from: restored) }
        } catch let error as ElasticFlowError {
            throw error
        } catch {
            throw .task(name: plan.task, message: "\(error)")
        }
        aggregated = plan.alreadyAggregated
        journal = plan.journal
        taskName = plan.task
    }

    /// Merges one result whose receipts were just closed (no other lock held).
    /// - Parameters:
    ///   - combined: the result is a worker's aggregation snapshot covering `sequences`
    ///     (`restore(from:)` adds it), not one parcel's result (`absorb`).
    ///   - limits: what the parcels of a remote result could hold (nil for the master's own): a
    ///     `CheckedAggregation` refuses a result past them before merging anything.
    /// - Throws: `ResultRefusal`, or what the aggregation throws for a result it cannot take.
    func merge(_ result: [UInt8], combined: Bool, for sequences: [UInt64], limits: ResultLimits? = nil) throws {
        try lock.withLock {
            if let limits, let checked = aggregation as? any CheckedAggregation {
                try result.withUnsafeBytes { try checked.absorb(bytes: $0, combined: combined, checkedAgainst: limits) }
            } else if combined {
                try aggregation.restore(from: result)
            } else {
                try aggregation.absorb(result)
            }
            aggregated.formUnion(sequences)
            sinceCheckpoint += sequences.count
        }
    }

    /// `merge` on bytes in place (a decompression buffer, valid for the call only): no copy when
    /// the aggregation can take them so (`InPlaceAggregation`).
    func merge(bytes: UnsafeRawBufferPointer, combined: Bool, for sequences: [UInt64], limits: ResultLimits? = nil)
        throws
    {
        guard let inPlace = aggregation as? any InPlaceAggregation else {
            return try merge(Array(bytes), combined: combined, for: sequences, limits: limits)
        }
        try lock.withLock {
            if let limits, let checked = aggregation as? any CheckedAggregation {
                try checked.absorb(bytes: bytes, combined: combined, checkedAgainst: limits)
            } else {
                try inPlace.absorb(bytes: bytes, combined: combined)
            }
            aggregated.formUnion(sequences)
            sinceCheckpoint += sequences.count
        }
    }

    /// The step's output (once every result is merged).
    func output() throws(ElasticFlowError) -> StepOutput {
        do {
            return try lock.withLock { try aggregation.output() }
        } catch let error as ElasticFlowError {
            throw error
        } catch {
            throw .task(name: taskName, message: "\(error)")
        }
    }

    /// Writes a checkpoint when one is due (every `checkpointEvery` receipts or seconds), or
    /// always with `force`. The caller's thread only, with no lock held.
    /// - Returns: the error that stopped the checkpoint, if any.
    func checkpointIfDue(force: Bool) -> ElasticFlowError? {
        guard let journal else { return nil }
        let every = journal.checkpointEvery
        let taken: (snapshot: [UInt8], aggregated: Set<UInt64>)?
        do {
            taken = try lock.withLock {
                guard sinceCheckpoint > 0 || force else { return nil }
                guard
                    force || sinceCheckpoint >= every.receipts
                        || monotonicSeconds() - lastCheckpoint >= every.seconds
                else { return nil }
                sinceCheckpoint = 0
                return (try aggregation.snapshot(), aggregated)
            }
        } catch let error as ElasticFlowError {
            return error
        } catch {
            return .task(name: taskName, message: "cannot checkpoint: \(error)")
        }
        guard let taken else { return nil }
        defer { lastCheckpoint = monotonicSeconds() }
        do {
            try journal.checkpoint(aggregated: taken.aggregated, aggregate: taken.snapshot)
        } catch {
            return error
        }
        return nil
    }
}

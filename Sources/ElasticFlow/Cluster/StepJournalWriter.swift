/// What the master persists while a step runs (see `StepJournal`). `cut` and `allCut` are called
/// under `StepCutter`'s lock, in sequence order; `checkpoint` from the caller's thread alone. None
/// is called under the step lock: they may fsync.
protocol StepJournalWriter: AnyObject, Sendable {
    /// A parcel was cut (before it is sent anywhere; again on a resumed step).
    func cut(_ receipt: Receipt) throws(ElasticFlowError)
    /// Every parcel has been cut.
    func allCut() throws(ElasticFlowError)
    /// Time for a checkpoint: every `interval` aggregated receipts or seconds.
    var checkpointEvery: (receipts: Int, seconds: Double) { get }
    /// Persists the aggregate with the receipts it contains.
    func checkpoint(aggregated: Set<UInt64>, aggregate: [UInt8]) throws(ElasticFlowError)
}

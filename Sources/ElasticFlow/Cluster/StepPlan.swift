/// What one step is to do, and what a resumed step already has.
struct StepPlan {
    var step: UInt32
    var task: String
    var sources: [DataSource]
    var options: TaskOptions
    /// Receipts already aggregated (a resumed step): their parcels are cut but not sent.
    var alreadyAggregated: Set<UInt64> = []
    /// The aggregate of those receipts.
    var restoredAggregate: [UInt8]?
    /// Persists the step as it goes (nil: nothing is persisted).
    var journal: StepJournalWriter?
}

/// What the parcels a remote result answers could hold: their bytes in all, and the largest one's.
/// Copy mode counts the parcels' lengths; shared-input mode the ranges the worker says it read.
struct ResultLimits: Sendable, Equatable {
    var bytes: UInt64
    var longestParcel: UInt64
}

/// A result refused before any of it was merged: its parcels could not have produced it. The
/// master treats the node that sent it as failed.
struct ResultRefusal: Error, Equatable {
    /// Why, as a phrase that follows "its result for receipt R" ("counts 9 words in 4 bytes").
    var reason: String
}

/// An aggregation that can judge a remote result against what its parcels could hold before it
/// merges it: one call, so what the check read (a table's total) serves the merge too.
protocol CheckedAggregation: TaskAggregation {
    /// Checks a remote result, then `absorb`s it (or, when `combined`, `restore`s it); bytes valid
    /// for the call only.
    /// - Throws: `ResultRefusal` for a result its parcels could not have produced (nothing
    ///   merged); `ElasticFlowError` for one that is possible but cannot be merged (a true
    ///   overflow), or what the merge throws.
    func absorb(bytes: UnsafeRawBufferPointer, combined: Bool, checkedAgainst limits: ResultLimits) throws
}

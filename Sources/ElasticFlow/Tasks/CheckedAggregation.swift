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
/// merges it (the master runs the check under the aggregate's lock, just before the merge).
protocol CheckedAggregation: TaskAggregation {
    /// - Throws: `ResultRefusal` for a result its parcels could not have produced;
    ///   `ElasticFlowError` for a result that is possible but cannot be merged (a true overflow).
    func check(_ result: UnsafeRawBufferPointer, against limits: ResultLimits) throws
}

/// A task whose parcels a worker can process straight into one running aggregate: map-side
/// combining without a serialized result per parcel and a merge of it (the word count counts
/// parcel after parcel into one table). A worker uses it for the parcels it combines
/// (`ResultCombiner`); the rest still go through `process`.
protocol AccumulatingTask: ParcelTask {
    /// A fresh, empty aggregate.
    func makeAccumulator(options: TaskOptions) throws -> any TaskAccumulator
}

/// A running aggregate of several parcels on a worker. Used by one thread at a time.
protocol TaskAccumulator: AnyObject {
    /// Processes a parcel into the aggregate. After a throw the aggregate holds part of the
    /// parcel: it must be dropped, and what it held is lost.
    func add(_ parcel: ParcelBytes) throws
    /// The bytes `serialized()` would take now.
    var serializedSize: Int { get }
    /// The aggregate, in the form of one parcel's result (`ParcelTask.process`): what the parcels
    /// added to it give together. The master absorbs it like a result, or a combined snapshot.
    func serialized() throws -> [UInt8]
    /// Empties it for another batch, keeping its capacity.
    func clear()
}

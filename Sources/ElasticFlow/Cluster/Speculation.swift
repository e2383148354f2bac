/// Speculative copies of stragglers (Spark's `spark.speculation`): a parcel open on a worker for
/// much longer than the step's median parcel gets a copy on an idle node; the first result wins and
/// the other is dropped as a duplicate.
public struct SpeculationSettings: Sendable, Hashable {
    /// A parcel straggles once it has been open this many times the median parcel time...
    public var multiplier: Double
    /// ...and at least this long (so a step of fast parcels does not copy on noise).
    public var minimumTime: Duration
    /// Parcels that must have finished in the step before there is a median to compare with.
    public var minimumFinished: Int

    /// Settings with Spark-like defaults: a copy once a parcel is open 4 times the median and at least
    /// 1 s, after 5 parcels finished. `ClusterConfiguration.validate()` checks them against
    /// `Limits.speculationMultiplier`, `Limits.speculationFloor` and `Limits.speculationFinished`.
    public init(multiplier: Double = 4, minimumTime: Duration = .seconds(1), minimumFinished: Int = 5) {
        self.multiplier = multiplier
        self.minimumTime = minimumTime
        self.minimumFinished = minimumFinished
    }

    func validate() throws(ElasticFlowError) {
        guard Limits.speculationMultiplier.contains(multiplier) else {
            throw .invalidArgument("the speculation multiplier must be in 1...1000, not \(multiplier)")
        }
        try Limits.check(minimumTime, in: Limits.speculationFloor, "the speculation floor")
        try Limits.check(minimumFinished, in: Limits.speculationFinished, "the parcels speculation waits for")
    }
}

/// The recent parcel times of a step (seconds from sent to merged), for the median speculation
/// compares with. Bounded: the last `capacity` parcels only. Used under the step lock.
struct ParcelTimes {
    static let capacity = 1024
    private var times: [Double] = []
    private var next = 0
    private(set) var finished = 0

    mutating func record(_ seconds: Double) {
        finished += 1
        if times.count < Self.capacity {
            times.append(seconds)
        } else {
            times[next] = seconds
            next = (next + 1) % Self.capacity
        }
    }

    /// The median of the recent times (nil before any).
    var median: Double? {
        guard !times.isEmpty else { return nil }
        let sorted = times.sorted()
        return sorted.count % 2 == 1
            ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}

import Dispatch
import Synchronization

extension Flow where Element: Sendable {
    /// Routes every element to one of `stages` stages by the stable hash of its key, so all
    /// elements with the same key meet in the same stage (Elixir's `Flow.partition(stages:, key:)`).
    /// What follows (`map`, `filter`, `reduce`) runs per stage, the stages in parallel, and
    /// `reduce` combines the stage results with an aggregator.
    ///
    /// The hash is FNV-1a of the key's bytes (`StableHashable`), identical in every process, so a
    /// key goes to the same stage on every node and every run.
    /// - Parameters:
    ///   - stages: how many stages, in 1...1024; running a flow with another count throws
    ///     `ElasticFlowError.invalidArgument`.
    ///   - key: the routing key of an element.
    public func partition<Key: StableHashable>(
        stages: Int, by key: @escaping @Sendable (Element) throws -> Key
    ) -> PartitionedFlow<Element> {
        let upstream = run
        return PartitionedFlow(stages: stages) { parcel in
            guard PartitionedFlow<Element>.stageRange.contains(stages) else {
                throw ElasticFlowError.invalidArgument(
                    "partition stages must be in \(PartitionedFlow<Element>.stageRange), not \(stages)")
            }
            var buckets = [[Element]](repeating: [], count: stages)
            let divisor = UInt64(stages)
            try upstream(parcel) { element in
                buckets[Int(try key(element).stableHash % divisor)].append(element)
            }
            return buckets.map { Flow($0) }
        }
    }
}

/// A flow split into stages by key (see `Flow.partition(stages:by:)`). Transformations apply
/// within each stage; `reduce` reduces each stage separately, in parallel, then combines the stage
/// results, in stage order, with an aggregator.
public struct PartitionedFlow<Element>: Sendable {
    static var stageRange: ClosedRange<Int> { 1...1024 }

    /// Number of stages.
    public let stages: Int
    /// Routes one parcel's elements: one flow per stage, over that stage's elements.
    let split: @Sendable (ParcelBytes) throws -> [Flow<Element>]

    init(stages: Int, split: @escaping @Sendable (ParcelBytes) throws -> [Flow<Element>]) {
        self.stages = stages
        self.split = split
    }

    private func perStage<T>(_ transform: @escaping @Sendable (Flow<Element>) -> Flow<T>) -> PartitionedFlow<T> {
        let upstream = split
        return PartitionedFlow<T>(stages: stages) { parcel in try upstream(parcel).map(transform) }
    }

    /// Transforms each element, within its stage.
    public func map<T>(_ transform: @escaping @Sendable (Element) throws -> T) -> PartitionedFlow<T> {
        perStage { $0.map(transform) }
    }

    /// Replaces each element with the elements of a sequence made from it, within its stage.
    public func flatMap<S: Sequence>(
        _ transform: @escaping @Sendable (Element) throws -> S
    ) -> PartitionedFlow<S.Element> {
        let upstream = split
        return PartitionedFlow<S.Element>(stages: stages) { parcel in
            try upstream(parcel).map { stage in
                Flow<S.Element> { parcel, sink in
                    try stage.run(parcel) { element in
                        for inner in try transform(element) { try sink(inner) }
                    }
                }
            }
        }
    }

    /// Keeps the elements for which `isIncluded` is true.
    public func filter(_ isIncluded: @escaping @Sendable (Element) throws -> Bool) -> PartitionedFlow<Element> {
        perStage { $0.filter(isIncluded) }
    }

    /// Reduces each stage into its own copy of `initial`, the stages in parallel, then folds the
    /// stage results in stage order with `aggregator`. With a dictionary keyed by the partition key
    /// the stages hold disjoint keys and the default aggregator's merge is their union, so the
    /// result equals that of an unpartitioned reduce.
    /// - Parameters:
    ///   - initial: each stage's accumulator before its first element.
    ///   - aggregator: combines the stage results (default: `DefaultAggregator`).
    ///   - update: adds one element to a stage's accumulator.
    public func reduce<Accumulator: FlowValueConvertible>(
        into initial: Accumulator,
        combiningWith aggregator: some Aggregator = DefaultAggregator(),
        _ update: @escaping @Sendable (inout Accumulator, Element) throws -> Void
    ) -> FlowPipeline {
        let upstream = split
        return FlowPipeline { parcel in
            let stageFlows = try upstream(parcel)
            let results = Mutex([Result<FlowValue, any Error>?](repeating: nil, count: stageFlows.count))
            let runStage: @Sendable (Int) -> Void = { stage in
                // A stage ignores the parcel: its elements were routed to it already.
                let result = Result { () throws -> FlowValue in
                    try stageFlows[stage].reduce(into: initial, update).run(on: [])
                }
                results.withLock { $0[stage] = result }
            }
            if stageFlows.count == 1 {
                runStage(0)
            } else {
                DispatchQueue.concurrentPerform(iterations: stageFlows.count, execute: runStage)
            }
            var combined: FlowValue? = nil
            for result in results.withLock({ $0 }) {
                combined = try aggregator.aggregate(combined, result!.get())
            }
            return combined ?? initial.flowValue
        }
    }

    /// How many times each key occurs, per stage, merged: see `Flow.frequencies(by:)`.
    public func frequencies(by key: @escaping @Sendable (Element) throws -> String) -> FlowPipeline {
        reduce(into: [String: Int]()) { counts, element in counts[try key(element), default: 0] += 1 }
    }
}

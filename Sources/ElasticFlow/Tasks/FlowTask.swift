/// A task made of a flow pipeline and an aggregator: each node runs the pipeline over its
/// parcel's lines and sends the resulting `FlowValue` encoded; the master decodes each result and
/// folds it with the aggregator. The step's output is `.value(aggregated)` (`.null` when there
/// were no parcels).
///
/// ```swift
/// let lineCount = FlowTask(Flow.lines.count())                  // ints sum up
/// let histogram = FlowTask(Flow.lines.frequencies { String($0.count) })
/// let longest = FlowTask(pipeline, aggregator: .max)
/// ```
public struct FlowTask: ParcelTask {
    /// Folds the parcels' values on the master.
    public let aggregator: any Aggregator
    private let build: @Sendable (TaskOptions) throws -> FlowPipeline

    /// - Parameters:
    ///   - pipeline: what each node runs on a parcel.
    ///   - aggregator: folds the parcels' values (default: `DefaultAggregator`).
    public init(_ pipeline: FlowPipeline, aggregator: some Aggregator = DefaultAggregator()) {
        self.aggregator = aggregator
        build = { _ in pipeline }
    }

    /// A task whose pipeline depends on the step's options (`lowercase`, `parameters`): `build`
    /// runs once per parcel, on the node, with the options the master sent.
    public init(
        aggregator: some Aggregator = DefaultAggregator(),
        pipeline build: @escaping @Sendable (TaskOptions) throws -> FlowPipeline
    ) {
        self.aggregator = aggregator
        self.build = build
    }

    /// Runs the pipeline over the parcel's lines.
    /// - Returns: the parcel's value, `encoded()`.
    /// - Throws: what the pipeline throws, or `ElasticFlowError.task` for a value nested deeper
    ///   than the master could decode (`FlowValue.maximumNestingDepth`).
    public func process(_ parcel: ParcelBytes, options: TaskOptions) throws -> [UInt8] {
        let value = try build(options).run(parcel)
        guard value.nestingDepth <= FlowValue.maximumNestingDepth else {
            throw ElasticFlowError.task(
                name: "flow",
                message: "result nests deeper than \(FlowValue.maximumNestingDepth) levels")
        }
        return value.encoded()
    }

    /// An aggregation that folds each parcel's decoded `FlowValue` with `aggregator`.
    public func makeAggregation(options: TaskOptions) throws -> any TaskAggregation {
        FlowAggregation(aggregator: aggregator)
    }
}

/// The master side of a `FlowTask`: decodes each result and folds it into the accumulated value.
final class FlowAggregation: TaskAggregation {
    private let aggregator: any Aggregator
    private var accumulated: FlowValue?

    init(aggregator: any Aggregator) {
        self.aggregator = aggregator
    }

    /// - Throws: `ElasticFlowError.malformedValue` for a result that does not decode (nothing is
    ///   absorbed), or what the aggregator throws.
    func absorb(_ result: [UInt8]) throws {
        let value = try FlowValue(decoding: result)
        accumulated = try aggregator.aggregate(accumulated, value)
    }

    func output() throws -> StepOutput {
        .value(accumulated ?? .null)
    }

    func snapshot() throws -> [UInt8] { (accumulated ?? .null).encoded() }

    /// Folds the snapshot in like one more result (`null`, an empty aggregate, changes nothing).
    func restore(from snapshot: [UInt8]) throws { try absorb(snapshot) }
}

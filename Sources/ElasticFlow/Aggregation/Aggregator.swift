/// Folds the values a step's parcels produce, one at a time as they arrive, into the step's output
/// (on the master), and folds the stages of a partitioned flow into a parcel's value (on a node).
///
/// Results arrive in whatever order nodes finish, so an aggregator whose output must not depend
/// on timing should be commutative and associative (sums, merges of counts, max/min with a total
/// order); `DefaultAggregator` is, except where it concatenates or keeps the latest value.
public protocol Aggregator: Sendable {
    /// Combines what was accumulated so far (nil for the first value) with the next value.
    /// - Throws: when the values cannot be combined; the step then fails.
    func aggregate(_ accumulated: FlowValue?, _ next: FlowValue) throws -> FlowValue
}

/// An aggregator made of a closure: the way to give a task its own rule.
///
/// ```swift
/// let longest = CustomAggregator(name: "longest") { accumulated, next in
///     guard let accumulated else { return next }
///     return (next.stringValue?.utf8.count ?? 0) > (accumulated.stringValue?.utf8.count ?? 0) ? next : accumulated
/// }
/// ```
public struct CustomAggregator: Aggregator, CustomStringConvertible {
    /// Names the rule in errors and descriptions.
    public let name: String
    private let body: @Sendable (FlowValue?, FlowValue) throws -> FlowValue

    /// - Parameters:
    ///   - name: names the rule in errors and descriptions.
    ///   - body: combines the accumulated value (nil for the first) with the next one.
    public init(name: String, _ body: @escaping @Sendable (FlowValue?, FlowValue) throws -> FlowValue) {
        self.name = name
        self.body = body
    }

    /// Calls the closure given at creation with the accumulated value (nil for the first) and the next.
    /// - Throws: whatever the closure throws; the step then fails.
    public func aggregate(_ accumulated: FlowValue?, _ next: FlowValue) throws -> FlowValue {
        try body(accumulated, next)
    }

    /// `CustomAggregator(NAME)`, with the name given at creation.
    public var description: String { "CustomAggregator(\(name))" }
}

extension Aggregator {
    /// Folds a sequence of values in order (nil when it is empty).
    public func aggregate(_ values: some Sequence<FlowValue>) throws -> FlowValue? {
        var accumulated: FlowValue? = nil
        for value in values { accumulated = try aggregate(accumulated, value) }
        return accumulated
    }
}

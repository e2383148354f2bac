/// A lazy pipeline over the elements of one parcel, in the spirit of Elixir's Flow: a source
/// (`Flow.lines`, `Flow.lineBytes`), transformations (`map`, `flatMap`, `filter`), an optional
/// `partition` into stages, and a `reduce` that makes a `FlowPipeline`, which a `FlowTask` runs on
/// each parcel.
///
/// ```swift
/// let wordCounts = Flow.lines
///     .flatMap { $0.split(separator: " ") }
///     .partition(stages: 4, by: { $0 })
///     .reduce(into: [String: Int]()) { counts, word in counts[String(word), default: 0] += 1 }
/// let task = FlowTask(wordCounts)  // per key sums across parcels: the default aggregator
/// ```
///
/// Nothing runs until the pipeline is run on a parcel. Elements stream through the stages one at a
/// time: only `partition` holds a parcel's elements, to route them. Every closure is `@Sendable`
/// because the same flow runs on many threads at once, one parcel each.
public struct Flow<Element>: Sendable {
    /// Pushes every element of the parcel, in order, into the sink.
    let run: @Sendable (ParcelBytes, (Element) throws -> Void) throws -> Void

    init(run: @escaping @Sendable (ParcelBytes, (Element) throws -> Void) throws -> Void) {
        self.run = run
    }

    /// A flow over fixed elements, ignoring the parcel (`Flow.from_enumerable`): for tests, and
    /// for the stages of a partitioned flow.
    public init<Elements: Sequence & Sendable>(_ elements: Elements) where Elements.Element == Element {
        run = { _, sink in
            for element in elements { try sink(element) }
        }
    }
}

// MARK: - Sources

extension Flow where Element == String {
    /// Each line of the parcel without its `\n` (a `\r` before it stays), decoded as UTF-8 with
    /// U+FFFD for invalid sequences. A final line without a newline counts; an empty parcel has
    /// no lines.
    public static var lines: Flow<String> {
        Flow { parcel, sink in
            try parcel.forEachLine { line in try sink(String(decoding: line, as: UTF8.self)) }
        }
    }
}

extension Flow where Element == [UInt8] {
    /// Each line of the parcel as its exact bytes, without its `\n`.
    public static var lineBytes: Flow<[UInt8]> {
        Flow { parcel, sink in
            try parcel.forEachLine { line in try sink(Array(line)) }
        }
    }
}

// MARK: - Transformations

extension Flow {
    /// Transforms each element.
    public func map<T>(_ transform: @escaping @Sendable (Element) throws -> T) -> Flow<T> {
        let upstream = run
        return Flow<T> { parcel, sink in
            try upstream(parcel) { element in try sink(try transform(element)) }
        }
    }

    /// Replaces each element with the elements of a sequence made from it.
    public func flatMap<S: Sequence>(_ transform: @escaping @Sendable (Element) throws -> S) -> Flow<S.Element> {
        let upstream = run
        return Flow<S.Element> { parcel, sink in
            try upstream(parcel) { element in
                for inner in try transform(element) { try sink(inner) }
            }
        }
    }

    /// Keeps the elements for which `isIncluded` is true.
    public func filter(_ isIncluded: @escaping @Sendable (Element) throws -> Bool) -> Flow<Element> {
        let upstream = run
        return Flow { parcel, sink in
            try upstream(parcel) { element in
                if try isIncluded(element) { try sink(element) }
            }
        }
    }

    /// Drops `nil` results of a transformation.
    public func compactMap<T>(_ transform: @escaping @Sendable (Element) throws -> T?) -> Flow<T> {
        let upstream = run
        return Flow<T> { parcel, sink in
            try upstream(parcel) { element in
                if let result = try transform(element) { try sink(result) }
            }
        }
    }
}

// MARK: - Reductions

extension Flow {
    /// Folds every element of the parcel into one accumulator, whose `FlowValue` form is the
    /// parcel's result.
    /// - Parameters:
    ///   - initial: the accumulator's value before the first element (a fresh copy per parcel).
    ///   - update: adds one element to the accumulator.
    public func reduce<Accumulator: FlowValueConvertible>(
        into initial: Accumulator, _ update: @escaping @Sendable (inout Accumulator, Element) throws -> Void
    ) -> FlowPipeline {
        let upstream = run
        return FlowPipeline { parcel in
            var accumulator = initial
            try upstream(parcel) { element in try update(&accumulator, element) }
            return accumulator.flowValue
        }
    }

    /// How many elements the parcel has, as an `.int` (the default aggregator sums them).
    public func count() -> FlowPipeline {
        reduce(into: 0) { count, _ in count += 1 }
    }

    /// How many times each key occurs, as a dictionary `[key: .int(count)]` (the default
    /// aggregator adds the counts per key across parcels): Elixir's `Enum.frequencies_by`.
    public func frequencies(by key: @escaping @Sendable (Element) throws -> String) -> FlowPipeline {
        reduce(into: [String: Int]()) { counts, element in counts[try key(element), default: 0] += 1 }
    }

    /// Every element, in order, as an `.array` (the default aggregator concatenates arrays in
    /// arrival order, which varies between runs).
    public func collect() -> FlowPipeline where Element: FlowValueConvertible {
        reduce(into: [FlowValue]()) { elements, element in elements.append(element.flowValue) }
    }
}

extension Flow where Element == String {
    /// How many times each string occurs: `frequencies(by:)` with the string itself as key.
    public func frequencies() -> FlowPipeline {
        frequencies(by: { $0 })
    }
}

// MARK: - Pipeline

/// A flow that ends in a reduction: turns one parcel into one `FlowValue`. Built by `reduce` (or
/// directly, from a closure); run by `FlowTask` on every parcel.
public struct FlowPipeline: Sendable {
    private let body: @Sendable (ParcelBytes) throws -> FlowValue

    /// A pipeline from a closure that reads the parcel itself.
    public init(_ body: @escaping @Sendable (ParcelBytes) throws -> FlowValue) {
        self.body = body
    }

    /// Runs the pipeline on one parcel.
    /// - Throws: whatever a closure of the pipeline throws.
    public func run(_ parcel: ParcelBytes) throws -> FlowValue {
        try body(parcel)
    }

    /// Runs the pipeline on bytes in memory, as if they were a parcel.
    public func run(on bytes: [UInt8]) throws -> FlowValue {
        try bytes.withUnsafeBytes { buffer in try body(ParcelBytes(buffer)) }
    }
}

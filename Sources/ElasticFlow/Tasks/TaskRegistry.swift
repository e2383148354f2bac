#if canImport(Glibc)
    import Glibc
#endif

/// The tasks a program offers, by name. Every node runs the same program and so holds the same
/// registry; the master sends a task's name with each step and the node looks it up here (the
/// counterpart of the original's `{Module, :function}`).
///
/// ```swift
/// var registry = TaskRegistry.standard
/// try registry.register("line-count", FlowTask(Flow.lines.count()))
/// ```
public struct TaskRegistry: Sendable {
    private var tasks: [String: any ParcelTask] = [:]

    /// The longest name, in UTF-8 bytes (names travel in the STEP frame and in journals; a bound
    /// keeps them short and printable on one line).
    public static let maximumNameLength = 255

    /// An empty registry.
    public init() {}

    /// Registers a task under a name.
    /// - Throws: `ElasticFlowError.invalidArgument` for an empty name, a name longer than
    ///   `maximumNameLength` UTF-8 bytes, or a name already registered.
    public mutating func register(_ name: String, _ task: some ParcelTask) throws(ElasticFlowError) {
        guard !name.isEmpty else { throw .invalidArgument("a task name cannot be empty") }
        guard name.utf8.count <= Self.maximumNameLength else {
            let length = name.utf8.count
            throw .invalidArgument(
                "task name '\(name.prefix(32))…' is \(length) bytes long; the limit is \(Self.maximumNameLength)")
        }
        guard tasks[name] == nil else { throw .invalidArgument("task '\(name)' is already registered") }
        tasks[name] = task
    }

    /// The task registered under `name`.
    /// - Throws: `ElasticFlowError.invalidArgument("unknown task 'name' …")`, listing the known names.
    public func task(named name: String) throws(ElasticFlowError) -> any ParcelTask {
        guard let task = tasks[name] else {
            let known = names.isEmpty ? "none is registered" : "known tasks: " + names.joined(separator: ", ")
            throw .invalidArgument("unknown task '\(name)' (\(known))")
        }
        return task
    }

    /// Whether a task is registered under `name`.
    public func contains(_ name: String) -> Bool { tasks[name] != nil }

    /// Registered names, sorted.
    public var names: [String] { tasks.keys.sorted() }

    /// What the `elasticflow` CLI ships: "wordcount" (`WordCountTask`), and the flow examples
    /// "line-lengths" (`FlowTask.lineLengths`), "longest-line" (`FlowTask.longestLine`) and
    /// "word-frequencies" (`FlowTask.wordFrequencies`), "slow-wordcount" (the word count
    /// slowed by `delay-ms` per parcel, default 10: to watch elasticity and failures happen), and
    /// "parcel-count" (the trivial task: counts parcels; measures the per-parcel overhead).
    public static let standard: TaskRegistry = {
        var registry = TaskRegistry()
        // The names are constants known to be valid and distinct.
        try! registry.register("wordcount", WordCountTask())
        try! registry.register("line-lengths", FlowTask.lineLengths)
        try! registry.register("longest-line", FlowTask.longestLine)
        try! registry.register("word-frequencies", FlowTask.wordFrequencies)
        try! registry.register("slow-wordcount", SlowTask(WordCountTask()))
        try! registry.register("parcel-count", ParcelCountTask())
        return registry
    }()
}

// MARK: - Example tasks

extension FlowTask {
    /// A histogram of line lengths in bytes (without the newline): `["<length>": count]`, summed
    /// per key across parcels by the default aggregator.
    public static var lineLengths: FlowTask {
        FlowTask(
            Flow.lineBytes.reduce(into: [String: Int]()) { histogram, line in
                histogram[String(line.count), default: 0] += 1
            })
    }

    /// The longest line: `["length": bytes, "line": text]` (`.null` for no lines). Ties go to the
    /// line whose text (UTF-8 decoded with replacement) has the smallest bytes, both within a
    /// parcel and across parcels, so the answer does not depend on how the input was cut nor on the
    /// order results arrive in. A custom aggregator, since the default would concatenate.
    public static var longestLine: FlowTask {
        FlowTask(
            Flow.lineBytes.reduce(into: LongestLine()) { longest, line in longest.consider(line) },
            aggregator: CustomAggregator(name: "longest-line") { accumulated, next in
                guard let accumulated, !accumulated.isNull else { return next }
                if next.isNull { return accumulated }
                return try LongestLine.isLonger(next, than: accumulated) ? next : accumulated
            })
    }

    /// The word count of Elixir Flow's README, as a partitioned flow: words (runs of bytes other
    /// than ASCII whitespace, decoded as UTF-8 with replacement, ASCII-lowercased when the step's
    /// `lowercase` is set) routed by word to `parameters["stages"]` stages (default 4) and counted
    /// per stage: `[word: count]`, added up per word across parcels. Same counts as "wordcount" on
    /// UTF-8 text, much slower: it shows the API, the C core does the real job.
    public static var wordFrequencies: FlowTask {
        FlowTask { options in
            let stages: Int
            if let text = options.parameters["stages"] {
                guard let value = Int(text) else {
                    throw ElasticFlowError.invalidArgument("stages must be an integer, not '\(text)'")
                }
                stages = value
            } else {
                stages = 4
            }
            let lowercase = options.lowercase
            return Flow.lineBytes
                .flatMap { line in line.split(whereSeparator: WordSplitting.isSpace) }
                .map { word in
                    lowercase
                        ? String(decoding: word.lazy.map(WordSplitting.lowercased), as: UTF8.self)
                        : String(decoding: word, as: UTF8.self)
                }
                .partition(stages: stages, by: { $0 })
                .frequencies(by: { $0 })
        }
    }
}

/// The tokenizer rules of the C word count (`ef_counter_feed`), for the flow example.
enum WordSplitting {
    /// The six ASCII whitespace bytes: space, \t, \n, \v, \f, \r.
    @Sendable static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (0x09...0x0D).contains(byte)
    }

    @Sendable static func lowercased(_ byte: UInt8) -> UInt8 {
        (0x41...0x5A).contains(byte) ? byte | 0x20 : byte
    }
}

/// A parcel's longest line so far, for `FlowTask.longestLine`.
struct LongestLine: FlowValueConvertible {
    private var length = -1
    private var text = ""

    /// Keeps the line if it is longer, or as long and its text's bytes are smaller.
    mutating func consider(_ line: [UInt8]) {
        if line.count < length { return }
        let candidate = String(decoding: line, as: UTF8.self)
        if line.count > length || candidate.utf8.lexicographicallyPrecedes(text.utf8) {
            length = line.count
            text = candidate
        }
    }

    var flowValue: FlowValue {
        length < 0 ? .null : ["length": .int(Int64(length)), "line": .string(text)]
    }

    /// The order of `consider`, on two results.
    static func isLonger(_ a: FlowValue, than b: FlowValue) throws(ElasticFlowError) -> Bool {
        guard let aLength = a["length"]?.intValue, let aLine = a["line"]?.stringValue,
            let bLength = b["length"]?.intValue, let bLine = b["line"]?.stringValue
        else {
            throw .malformedValue("a longest-line result is [\"length\": int, \"line\": string], not \(a) or \(b)")
        }
        return aLength != bLength ? aLength > bLength : aLine.utf8.lexicographicallyPrecedes(bLine.utf8)
    }
}

/// A task slowed down by `parameters["delay-ms"]` milliseconds per parcel (default 10): for
/// demonstrations and tests of membership and failures, where a step must last a while.
public struct SlowTask<Base: ParcelTask>: ParcelTask {
    /// The task that does the work after the delay.
    public let base: Base

    /// Wraps `base`.
    public init(_ base: Base) { self.base = base }

    /// Sleeps `delay-ms` milliseconds (10 by default, at most 60 000), then runs `base`.
    /// - Throws: what `base` throws.
    public func process(_ parcel: ParcelBytes, options: TaskOptions) throws -> [UInt8] {
        let milliseconds = options.parameters["delay-ms"].flatMap { UInt32($0) } ?? 10
        usleep(min(milliseconds, 60_000) * 1000)
        return try base.process(parcel, options: options)
    }

    /// `base`'s aggregation.
    public func makeAggregation(options: TaskOptions) throws -> any TaskAggregation {
        try base.makeAggregation(options: options)
    }
}

/// The trivial task: each parcel answers 1, the master sums them, so the output is the number of
/// parcels processed exactly once. Measures the framework's per-parcel cost (the many-parcels
/// benchmark) and checks exactly-once aggregation.
public struct ParcelCountTask: ParcelTask {
    /// The task; it has no settings.
    public init() {}

    /// The value 1, encoded.
    public func process(_ parcel: ParcelBytes, options: TaskOptions) throws -> [UInt8] {
        FlowValue.int(1).encoded()
    }

    /// An aggregation that sums the parcels' 1s (`DefaultAggregator`).
    public func makeAggregation(options: TaskOptions) throws -> any TaskAggregation {
        try FlowTask(FlowPipeline { _ in .int(1) }, aggregator: DefaultAggregator()).makeAggregation(options: options)
    }
}

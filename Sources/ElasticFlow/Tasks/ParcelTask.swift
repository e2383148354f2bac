/// The bytes of one parcel as a task sees them: whole lines (a parcel never splits a word or, but
/// for a line longer than a parcel, a line). Valid only during the task's `process` call: copy
/// what must outlive it (the type cannot enforce this yet; `~Escapable` will).
public struct ParcelBytes {
    let buffer: UnsafeRawBufferPointer

    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    /// Number of bytes.
    public var count: Int { buffer.count }

    /// Calls body with the bytes in place (no copy).
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(buffer)
    }

    /// A copy of the bytes.
    public var array: [UInt8] { Array(buffer) }

    /// Calls body for each line, without its newline, as the exact bytes (no copy per line).
    public func forEachLine(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        var start = 0
        let count = buffer.count
        var index = 0
        while index < count {
            if buffer[index] == 0x0A {
                try body(UnsafeRawBufferPointer(rebasing: buffer[start..<index]))
                start = index + 1
            }
            index += 1
        }
        if start < count { try body(UnsafeRawBufferPointer(rebasing: buffer[start..<count])) }
    }
}

/// Options of a step's task, sent to every node with the step.
public struct TaskOptions: Hashable, Sendable, Codable {
    /// Fold ASCII A-Z to lowercase (the word count honours it; flow tasks may read it).
    public var lowercase: Bool
    /// Free-form parameters a task may read.
    public var parameters: [String: String]
    /// The longest word the word count accepts (nil: no cap). Not part of a step's definition
    /// (not encoded): it comes from the configuration and travels in the STEP's `maxWordSize`.
    public var maxWordSize: Int? = nil

    public init(lowercase: Bool = false, parameters: [String: String] = [:]) {
        self.lowercase = lowercase
        self.parameters = parameters
    }

    enum CodingKeys: String, CodingKey { case lowercase, parameters }

    /// Decodes with defaults, so `{"lowercase": true}` alone is enough in a steps file.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        lowercase = try container.decodeIfPresent(Bool.self, forKey: .lowercase) ?? false
        parameters = try container.decodeIfPresent([String: String].self, forKey: .parameters) ?? [:]
    }
}

/// What a finished step produced.
public enum StepOutput: Sendable {
    /// The built-in word count's merged table.
    case wordCount(WordCounter)
    /// A flow task's aggregated value.
    case value(FlowValue)
}

/// A unit of work registered by name in the program every node runs (the counterpart of the
/// original's `task: {Module, :function}`): nodes look tasks up by the name the master sends.
public protocol ParcelTask: Sendable {
    /// Processes one parcel on whichever node received it; the result is serialized for the wire.
    /// - Throws: any error; the parcel is then reported as failed (and retried elsewhere).
    func process(_ parcel: ParcelBytes, options: TaskOptions) throws -> [UInt8]

    /// Creates the master-side aggregation of one step's results.
    func makeAggregation(options: TaskOptions) throws -> any TaskAggregation
}

/// Folds a step's parcel results, as they arrive, into its output. Used by one thread at a time.
public protocol TaskAggregation: AnyObject {
    /// Adds one parcel's serialized result.
    func absorb(_ result: [UInt8]) throws
    /// The output so far (the final output once every parcel is absorbed).
    func output() throws -> StepOutput
    /// The aggregate so far, serialized, for the step journal's checkpoints.
    func snapshot() throws -> [UInt8]
    /// Adds a snapshot's aggregate into this aggregation (a resumed step starts from it).
    func restore(from snapshot: [UInt8]) throws
}

extension ParcelTask {
    /// Runs the task on each parcel in turn in this process and aggregates the results in order:
    /// a step without a cluster, for tests and examples.
    /// - Parameter parcels: each parcel's bytes (whole lines).
    /// - Throws: what `process`, `absorb` or `output` throw.
    public func runLocally(parcels: [[UInt8]], options: TaskOptions = TaskOptions()) throws -> StepOutput {
        let aggregation = try makeAggregation(options: options)
        for parcel in parcels {
            try aggregation.absorb(try parcel.withUnsafeBytes { try process(ParcelBytes($0), options: options) })
        }
        return try aggregation.output()
    }
}

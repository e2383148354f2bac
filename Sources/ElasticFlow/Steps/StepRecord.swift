import Foundation

/// The states a step goes through, as `StepRecord.state` and the timeline spell them. Stored in step.json
/// as the raw value (`"pending"`, `"completed-with-retries"`, ...); a step.json naming any other state is
/// refused when decoded (`DecodingError.dataCorrupted`, "unknown state '...'").
public enum StepState: String, Codable, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Queued; nothing cut yet.
    case pending
    /// Parcels are being cut, sent and aggregated.
    case running
    /// Every receipt closed, no parcel had to be sent twice.
    case completed
    /// Every receipt closed after some parcels were sent again.
    case completedWithRetries = "completed-with-retries"
    /// Stopped by an error (`StepRecord.failure` says which); `retry` may finish it.
    case failed
    /// Stopped on request.
    case cancelled
    /// Found running by a master that restarted after a crash; resuming finishes it.
    case interrupted

    /// True for the states of a step whose result is final: completed and completed-with-retries.
    public var isFinished: Bool { self == .completed || self == .completedWithRetries }

    /// True for the states that record why the step stopped in `StepRecord.failure`: failed, cancelled and
    /// interrupted.
    public var isFailure: Bool { self == .failed || self == .cancelled || self == .interrupted }

    /// The raw value, as step.json, the timeline and the CLI spell it.
    public var description: String { rawValue }

    /// Decodes the raw value.
    /// - Throws: `DecodingError.dataCorrupted`, its debug description "unknown state '...'", for a string
    ///   that names no state (such as one a later version wrote).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let state = StepState(rawValue: text) else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(
                    codingPath: container.codingPath, debugDescription: "unknown state '\(text)'",
                    underlyingError: UnknownStepState(value: text)))
        }
        self = state
    }

    /// Encodes the raw value.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// The underlying error of the `DecodingError` a `StepState` throws for a string that names no state: it
/// tells the journal that the error's description is the one-line reason to report.
struct UnknownStepState: Error, Sendable, Hashable {
    /// The string found where a state was expected.
    var value: String
}

/// What the journal knows about one step: what it runs on (enough to cut the same parcels again), where it
/// is, how it got there. Stored as `step.json` in the step's directory (see `StepJournal`).
public struct StepRecord: Codable, Sendable, Hashable {
    /// The version of the `step.json` layout this code writes and reads.
    public static let currentVersion = 1

    /// One state change.
    public struct Event: Codable, Sendable, Hashable {
        /// The state the step entered.
        public var state: StepState
        /// Seconds since 1970 (UTC).
        public var time: Double
        /// Why, for people (an error message, "resumed", a node name); may be empty.
        public var detail: String

        /// An event entering `state` at `time` (seconds since 1970, UTC).
        public init(state: StepState, time: Double, detail: String) {
            self.state = state
            self.time = time
            self.detail = detail
        }
    }

    /// Layout version of step.json (`currentVersion` when written by this code).
    public private(set) var version: Int
    /// The step number, unique within a step-data directory.
    public var step: UInt32
    /// A name for people (the CLI shows it).
    public var name: String
    /// The registered name of the task every parcel runs.
    public var task: String
    /// The options the task ran with.
    public var options: TaskOptions
    /// Source paths in order (a receipt's partition indexes this list); `-` is standard input, which
    /// cannot be read twice, so a step reading it can be listed but not resumed or retried.
    public var sources: [String]
    /// Target parcel size in bytes: with `sources`, it fixes the parcels (cutting is deterministic).
    public var parcelSize: Int
    /// Parcel compression, in `Compression(parsing:)` syntax.
    public var compression: String
    /// Where the step is; change it with `StepJournal.update(state:detail:)`.
    public var state: StepState
    /// Every state the step was in, oldest first.
    public var timeline: [Event]
    /// Why the step last failed; nil unless its state is failed, cancelled or interrupted.
    public var failure: String?
    /// Parcels cut; final once `receiptsSealed`.
    public var parcels: Int
    /// True once every parcel has been cut and its receipt made durable (`StepJournal.sealReceipts()`):
    /// from then on receipts.log alone lists every parcel, and a receipt it lacks is corruption.
    public var receiptsSealed: Bool
    /// Parcels sent again after a node failed or went down.
    public var retries: Int
    /// Results dropped because their receipt was already closed.
    public var duplicates: Int
    /// True when the step runs in shared-input mode (its receipts are byte-range splits); nil or
    /// false in copy mode (and in records written before shared-input mode existed).
    public var sharedInput: Bool?
    /// How the step's files were read (`Decompression`: `auto` or `none`), which fixes where its
    /// parcels fall in a compressed file; nil in records written before compressed input was
    /// read as text, whose files were all read as raw bytes (`none`).
    public var decompression: String?
    /// `decompression`, with nil read as `none` (see there).
    var inputDecompression: String { decompression ?? Decompression.none.rawValue }
    /// Shared-input mode: each source's size and modification time when the step began. A resume
    /// that finds another refuses to run (the result would mix two versions of a file).
    public var sourceFingerprints: [SourceFingerprint]?
    /// `crc32c:XXXXXXXX` of the step's definition as it began (`computedDefinitionDigest`: task,
    /// options, sources, parcel size, mode and fingerprints), written once by `StepJournal.create`:
    /// a resume that finds step.json's definition no longer matching it refuses to run (an edited
    /// step.json would otherwise mix, say, two case foldings in one result). nil in records written
    /// before the digest existed (not checked).
    public var definitionDigest: String?

    /// The digest of what fixes the step's parcels and their results, in canonical JSON (sorted keys).
    public func computedDefinitionDigest() -> String {
        struct Definition: Encodable {
            var task: String
            var options: TaskOptions
            var sources: [String]
            var parcelSize: Int
            var sharedInput: Bool
            var sourceFingerprints: [SourceFingerprint]?
            var decompression: String?
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes =
            (try? encoder.encode(
                Definition(
                    task: task, options: options, sources: sources, parcelSize: parcelSize,
                    sharedInput: sharedInput ?? false, sourceFingerprints: sourceFingerprints,
                    decompression: decompression))) ?? Data()
        let value = Array(bytes).withUnsafeBytes { crc32c($0) }
        let hex = String(value, radix: 16)
        return "crc32c:" + String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// Why the recorded definition no longer matches its digest, or nil when it does (or there is none).
    func definitionChange() -> String? {
        guard let definitionDigest else { return nil }
        let now = computedDefinitionDigest()
        guard now != definitionDigest else { return nil }
        return "its definition (task, options, sources, parcel size, mode) was edited since the step began: "
            + "digest \(now), recorded \(definitionDigest)"
    }

    /// A pending step with an empty timeline (`StepJournal.create` adds its first event).
    public init(
        step: UInt32, name: String, task: String, options: TaskOptions = TaskOptions(), sources: [String],
        parcelSize: Int, compression: String = "none"
    ) {
        version = Self.currentVersion
        self.step = step
        self.name = name
        self.task = task
        self.options = options
        self.sources = sources
        self.parcelSize = parcelSize
        self.compression = compression
        state = .pending
        timeline = []
        failure = nil
        parcels = 0
        receiptsSealed = false
        retries = 0
        duplicates = 0
    }

    /// False when a source is standard input: its bytes are gone once read, so the step's parcels cannot be
    /// cut again to resume or retry it.
    public var isResumable: Bool { !sources.contains("-") }

    /// Checks what a record must satisfy to be written or trusted once read.
    /// - Returns: nil when valid, else why not.
    func problem() -> String? {
        if version != Self.currentVersion {
            return "unsupported version \(version) (this program reads version \(Self.currentVersion))"
        }
        if task.isEmpty { return "empty task name" }
        if sources.isEmpty { return "no sources" }
        if parcelSize <= 0 { return "parcel size \(parcelSize) is not positive" }
        // step.json is read back to cut the parcels again, so a size no run may use is refused as
        // corruption: a resume trusted `parcelSize: 107374182400` and aborted allocating a parcel.
        if parcelSize > Limits.parcelSize.upperBound {
            return "parcel size \(parcelSize) is over the limit of \(Limits.parcelSize.upperBound) bytes"
        }
        if parcels < 0 || retries < 0 || duplicates < 0 { return "negative counter" }
        do {
            _ = try Compression(parsing: compression)
        } catch {
            return error.description
        }
        return nil
    }
}

import Foundation

/// The range of every numeric setting, flag and cluster-file value alike: the one place these
/// bounds live (docs/limits.md has them as a table). `ClusterConfiguration.validate()`,
/// `WorkerConfiguration.validate()` and `WordCountOptions.validate()` check against them, and the
/// CLI and the cluster file go through those, so a value out of range is one clear line before
/// anything starts — never an allocation failure, an arithmetic trap or a timer that never fires.
public enum Limits {
    /// Counting threads (count, worker, master).
    public static let threads = 1...1024
    /// Parcels a node may hold unanswered.
    public static let inFlight = 1...1024
    /// Task failures a parcel may have before the step fails.
    public static let maxAttempts = 1...100
    /// Target parcel size: half the default payload limit, so a parcel (which may run past its
    /// target to the end of a word) always fits a frame.
    public static let parcelSize = 1...(128 << 20)
    /// The longest word accepted (`--max-word-size`); a parcel may run this far past its target.
    public static let maxWordSize = 1...(64 << 20)
    /// The default word-size cap.
    public static let defaultMaxWordSize = 1 << 20
    /// The largest frame payload (a parcel or a result, decompressed or not).
    public static let maxPayload = (64 << 10)...(1 << 30)
    /// Heartbeat interval, seconds.
    public static let heartbeatInterval = 0.001...600.0
    /// Heartbeat, handshake and connect time-outs, seconds (an hour at most: a larger one is a
    /// mistake, and an infinite one would never fire).
    public static let timeout = 0.01...3600.0
    /// How long a parcel may stay unanswered on a live worker, seconds (a day at most).
    public static let parcelTimeout = 0.01...86400.0
    /// How long a worker may hold a finished result to combine it, seconds.
    public static let combineDelay = 0.0...60.0
    /// Failures after which a worker is excluded from a step (0, in the flag and the cluster
    /// file, turns exclusion off).
    public static let excludeAfter = 1...1000
    /// How long a master no node can serve waits for a worker to join, seconds (a day at most).
    public static let joinTimeout = 0.01...86400.0
    /// Listed workers that must be ready before a step starts (`--min-workers`; at most the
    /// number listed, which `ClusterConfiguration.validate()` checks too).
    public static let minWorkers = 1...65536
    /// Speculation: the straggler multiplier of the median parcel time, its floor in seconds, and
    /// the parcels that must have finished first.
    public static let speculationMultiplier = 1.0...1000.0
    /// The range of `SpeculationSettings.minimumTime`, seconds (0 to a day).
    public static let speculationFloor = 0.0...86400.0
    /// The range of `SpeculationSettings.minimumFinished`, parcels (1 to 2^20).
    public static let speculationFinished = 1...(1 << 20)
    /// How long the status server keeps serving after the work ends (`--status-linger`), seconds.
    public static let statusLinger = 0.0...3600.0
    /// Size of a generated corpus (1 TiB).
    public static let generateSize = 1...(1 << 40)
    /// Size of `example`'s generated corpus (a demonstration, in a temporary directory).
    public static let exampleSize = 1...(4 << 30)

    /// - Throws: `ElasticFlowError.invalidArgument` naming the setting when `value` is outside `range`.
    public static func check(_ value: Int, in range: ClosedRange<Int>, _ name: String) throws(ElasticFlowError) {
        guard range.contains(value) else {
            throw .invalidArgument("\(name) must be in \(range.lowerBound)...\(range.upperBound), not \(value)")
        }
    }

    /// - Throws: `ElasticFlowError.invalidArgument` naming the setting when `value` is outside
    ///   `range` (which `nan` always is), in seconds.
    public static func check(seconds value: Double, in range: ClosedRange<Double>, _ name: String)
        throws(ElasticFlowError)
    {
        guard range.contains(value) else {
            throw .invalidArgument(
                "\(name) must be \(range.lowerBound.shortText)...\(range.upperBound.shortText) seconds, not \(value)")
        }
    }

    /// - Throws: `ElasticFlowError.invalidArgument` naming the setting when `value` is outside
    ///   `range`, in seconds (the public API's time-outs are `Duration`s, their ranges seconds).
    public static func check(_ value: Duration, in range: ClosedRange<Double>, _ name: String)
        throws(ElasticFlowError)
    {
        try check(seconds: value.inSeconds, in: range, name)
    }

    /// Seconds from a flag or a cluster file as a `Duration`, once they are within `range`
    /// (`nan`, infinities and values past `Duration`'s range never reach the conversion, which
    /// would trap on them).
    /// - Throws: `ElasticFlowError.invalidArgument` naming the setting when `seconds` is outside `range`.
    public static func duration(seconds: Double, in range: ClosedRange<Double>, _ name: String)
        throws(ElasticFlowError) -> Duration
    {
        try check(seconds: seconds, in: range, name)
        return .seconds(seconds)
    }

    /// A byte size within `range`, with its text in the message.
    /// - Throws: `ElasticFlowError.invalidArgument` for malformed text or a size outside `range`.
    public static func size(_ text: String, in range: ClosedRange<Int>, _ name: String) throws(ElasticFlowError) -> Int
    {
        let value: Int
        do {
            value = try ByteSize.parse(text)
        } catch {
            throw .invalidArgument("\(name): \(error.description)")
        }
        guard range.contains(value) else {
            throw .invalidArgument(
                "\(name) must be in \(ByteSize.describe(range.lowerBound))...\(ByteSize.describe(range.upperBound)), "
                    + "not '\(text)'")
        }
        return value
    }

    /// The memory parcels in progress may take at once: half of this machine's.
    public static var parcelMemory: UInt64 { ProcessInfo.processInfo.physicalMemory / 2 }

    /// `threads` parcels of `parcelSize` bytes (each thread holds one while counting it) must fit
    /// in `parcelMemory`, or a count would run out of memory part-way instead of refusing at once.
    /// - Throws: `ElasticFlowError.invalidArgument` naming both settings.
    public static func checkParcelMemory(threads: Int, parcelSize: Int) throws(ElasticFlowError) {
        let (total, overflow) = UInt64(max(threads, 0)).multipliedReportingOverflow(by: UInt64(max(parcelSize, 0)))
        guard overflow || total > parcelMemory else { return }
        throw .invalidArgument(
            "\(threads) threads × \(ByteSize.describe(parcelSize)) parcels (--threads × --parcel-size) would hold "
                + "more than half this machine's memory (\(parcelMemory >> 20) MiB): give fewer threads or smaller parcels"
        )
    }

    /// - Throws: `ElasticFlowError.invalidArgument` naming the setting when the size is outside `range`.
    public static func check(bytes value: Int, in range: ClosedRange<Int>, _ name: String) throws(ElasticFlowError) {
        guard range.contains(value) else {
            throw .invalidArgument(
                "\(name) must be in \(ByteSize.describe(range.lowerBound))...\(ByteSize.describe(range.upperBound)), "
                    + "not \(value) bytes")
        }
    }
}

extension Duration {
    /// The duration in seconds (attoseconds included), for the monotonic clock's arithmetic.
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension Double {
    /// `5` rather than `5.0`, `0.01` as is.
    fileprivate var shortText: String { rounded() == self ? String(Int(self)) : String(self) }
}

extension ElasticFlowError {
    /// A word longer than the cap, in `source`, in the parcel that starts at byte `offset` (the
    /// same words on every path: the cutter, a local counter, a worker's counter). A packed
    /// parcel also names the last source it holds (`through`).
    static func wordTooLong(source: String, through last: String? = nil, offset: UInt64, cap: Int) -> ElasticFlowError {
        let place = last.map { "'\(source)' or a file packed after it, up to '\($0)'," } ?? "'\(source)'"
        return .invalidArgument(
            "a word in \(place) (parcel at byte \(offset)) is longer than the word-size cap of "
                + "\(ByteSize.describe(cap)) (--max-word-size)")
    }
}

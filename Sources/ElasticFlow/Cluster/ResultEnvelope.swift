/// PARCEL flag: the payload is a `RangeRequest` (shared-input mode), not the parcel's bytes.
let frameFlagRange: UInt8 = 0x02
/// PARCEL flag (copy mode): answer with the digest of the bytes processed — their length, lines
/// and CRC32C, as a processed range — in every entry: the master cut some of the step's parcels
/// without reading them (`Receipt.isUnread`), and checks what each one held against the digest.
let frameFlagDigest: UInt8 = 0x04

/// The payload of a PARCEL in shared-input mode: which split to read, and the file's size when
/// the master split it (docs/protocol.md). 28 bytes, little-endian.
struct RangeRequest: Equatable {
    var range: ByteRange
    var fileSize: UInt64

    static let encodedSize = 28

    func encoded() -> [UInt8] {
        var writer = WireWriter()
        writer.u32(UInt32(range.source))
        writer.u64(range.offset)
        writer.u64(range.length)
        writer.u64(fileSize)
        return writer.bytes
    }

    init(range: ByteRange, fileSize: UInt64) {
        self.range = range
        self.fileSize = fileSize
    }

    init(decoding bytes: [UInt8]) throws(ElasticFlowError) {
        guard bytes.count == Self.encodedSize else { throw .core(.malformed, operation: "reading a range request") }
        var reader = WireReader(bytes)
        let source = Int(try reader.u32())
        let offset = try reader.u64()
        let length = try reader.u64()
        fileSize = try reader.u64()
        guard length > 0, offset <= fileSize, length <= fileSize - offset else {
            throw .core(.malformed, operation: "reading a range request")
        }
        range = ByteRange(source: source, offset: offset, length: length)
    }
}

/// Worker-side combining: how many parcels' results a worker may merge into one RESULT, and how
/// long it may hold a result to wait for more. The worker also answers as soon as its threads
/// are about to run out of work, so combining never starves the pipeline.
public struct CombineSettings: Hashable, Sendable, Codable {
    /// Receipts one RESULT may cover (1: no combining).
    public var maxReceipts: Int
    /// How long a finished result may wait for others (`Limits.combineDelay`; seconds on the wire).
    public var maxDelay: Duration

    /// - Parameters:
    ///   - maxReceipts: receipts one RESULT may cover, 1...4096 (1: no combining).
    ///   - maxDelay: a bound on how stale a result may get, not the usual trigger (a batch
    ///     leaves as soon as the worker's threads run short of parcels); it must exceed a parcel's
    ///     processing time, or batches leave after one or two parcels (a 32 MiB split takes about
    ///     0.25 s on one core here).
    public init(maxReceipts: Int = 16, maxDelay: Duration = .seconds(1)) {
        self.maxReceipts = maxReceipts
        self.maxDelay = maxDelay
    }

    private enum CodingKeys: String, CodingKey { case maxReceipts, maxDelay }

    /// Decodes the STEP's `{"maxReceipts": N, "maxDelay": SECONDS}` (the wire keeps seconds).
    /// - Throws: `DecodingError` for a missing key, or seconds that are not finite or past a day
    ///   (the range check proper is `Limits.combineDelay`, in `StepAnnouncement.validate()`).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        maxReceipts = try container.decode(Int.self, forKey: .maxReceipts)
        let seconds = try container.decode(Double.self, forKey: .maxDelay)
        // Only what Duration can hold reaches `.seconds(_:)`; the range check says the rest.
        guard seconds.isFinite, abs(seconds) <= 86400 else {
            throw DecodingError.dataCorruptedError(
                forKey: .maxDelay, in: container, debugDescription: "combine delay \(seconds) s out of range")
        }
        maxDelay = .seconds(seconds)
    }

    /// Encodes `maxDelay` as seconds, as the wire has it.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(maxReceipts, forKey: .maxReceipts)
        try container.encode(maxDelay.inSeconds, forKey: .maxDelay)
    }

    /// No combining: one RESULT per parcel.
    public static let off = CombineSettings(maxReceipts: 1, maxDelay: .zero)
    /// The most receipts a RESULT may list (a bound on the envelope the master accepts).
    public static let receiptLimit = 4096
}

/// The head of every RESULT payload (docs/protocol.md): which receipts the result covers and,
/// in shared-input mode, what each one processed; the compressed result follows.
///
/// ```
/// u8  kind        0: one parcel's result (the task's output, absorbed);
///                 1: several parcels' results combined by the worker (an aggregation snapshot, restored)
/// u8  flags       bit 0: every entry carries a processed range
/// u16 count       receipts listed, 1...4096
/// count x { u64 sequence [u64 start, u64 length, u64 lines, u32 crc32c, u64 file size] }
/// ```
struct ResultEnvelope: Equatable {
    enum Kind: UInt8 {
        /// One parcel's result: `TaskAggregation.absorb`.
        case single = 0
        /// Combined on the worker: `TaskAggregation.restore(from:)` adds its snapshot.
        case combined = 1
    }

    struct Entry: Equatable {
        var sequence: UInt64
        var processed: ProcessedRange?
    }

    var kind: Kind
    var entries: [Entry]

    func encoded() -> [UInt8] {
        var writer = WireWriter()
        let ranges = entries.first?.processed != nil
        writer.u8(kind.rawValue)
        writer.u8(ranges ? 1 : 0)
        writer.u16(UInt16(entries.count))
        for entry in entries {
            writer.u64(entry.sequence)
            if ranges, let processed = entry.processed {
                writer.u64(processed.start)
                writer.u64(processed.length)
                writer.u64(processed.lines)
                writer.u32(processed.checksum)
                writer.u64(processed.fileSize)
            }
        }
        return writer.bytes
    }

    /// Decodes the head of a RESULT payload.
    /// - Returns: the envelope and the offset where the compressed result starts.
    static func decode(_ payload: [UInt8]) throws(ElasticFlowError) -> (ResultEnvelope, body: Int) {
        var reader = WireReader(payload)
        guard let kind = Kind(rawValue: try reader.u8()) else {
            throw .core(.malformed, operation: "reading a result envelope")
        }
        let flags = try reader.u8()
        let count = Int(try reader.u16())
        guard flags & ~1 == 0, count >= 1, count <= CombineSettings.receiptLimit, kind == .combined || count == 1
        else { throw .core(.malformed, operation: "reading a result envelope") }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            var entry = Entry(sequence: try reader.u64())
            if flags & 1 != 0 {
                entry.processed = ProcessedRange(
                    start: try reader.u64(), length: try reader.u64(), lines: try reader.u64(),
                    checksum: try reader.u32(), fileSize: try reader.u64())
            }
            entries.append(entry)
        }
        return (ResultEnvelope(kind: kind, entries: entries), reader.offset)
    }
}

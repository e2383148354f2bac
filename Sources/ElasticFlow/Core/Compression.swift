internal import CElasticFlow

/// How parcel bytes are compressed on the wire.
public enum Compression: Hashable, Sendable, CustomStringConvertible {
    /// No compression: parcels cross the wire as they are (and from files, with `sendfile`).
    case none
    /// lz4 at its default acceleration (1: the best lz4 ratio).
    case lz4
    /// lz4 with an acceleration from 2 to 65537: faster, and less compression, as it grows.
    case lz4Fast(acceleration: Int)
    /// zstd at a level from 1 (fastest) to 19.
    case zstd(level: Int)
    /// Chosen per link and direction as a step runs, from the link's measured throughput and each
    /// codec's measured speed and ratio on the step's own bytes (docs/compression.md).
    case auto

    /// Parses `none`, `auto`, `lz4`, `lz4:ACCELERATION`, `zstd` or `zstd:LEVEL`.
    /// - Throws: `ElasticFlowError.invalidArgument` for anything else.
    public init(parsing text: String) throws(ElasticFlowError) {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        switch (parts[0].lowercased(), parts.count) {
        case ("none", 1): self = .none
        case ("auto", 1): self = .auto
        case ("lz4", 1): self = .lz4
        case ("lz4", 2):
            guard let acceleration = Int(parts[1]), (1...Int(EF_LZ4_ACCELERATION_MAX)).contains(acceleration) else {
                throw .invalidArgument(
                    "invalid compression '\(text)': lz4 acceleration expected 1...\(EF_LZ4_ACCELERATION_MAX)")
            }
            self = acceleration == 1 ? .lz4 : .lz4Fast(acceleration: acceleration)
        case ("zstd", 1): self = .zstd(level: Int(EF_ZSTD_LEVEL_DEFAULT))
        case ("zstd", 2):
            guard let level = Int(parts[1]), (Int(EF_ZSTD_LEVEL_MIN)...Int(EF_ZSTD_LEVEL_MAX)).contains(level)
            else {
                throw .invalidArgument(
                    "invalid compression '\(text)': zstd level expected \(EF_ZSTD_LEVEL_MIN)...\(EF_ZSTD_LEVEL_MAX)")
            }
            self = .zstd(level: level)
        default:
            throw .invalidArgument(
                "unknown compression '\(text)': expected none, auto, lz4, lz4:ACCELERATION, zstd or zstd:LEVEL")
        }
    }

    /// The form `init(parsing:)` reads: `none`, `auto`, `lz4`, `lz4:ACCELERATION` or `zstd:LEVEL`.
    public var description: String {
        switch self {
        case .none: return "none"
        case .auto: return "auto"
        case .lz4: return "lz4"
        case .lz4Fast(let acceleration): return "lz4:\(acceleration)"
        case .zstd(let level): return "zstd:\(level)"
        }
    }

    /// The codec of a buffer compressed this way; `auto` is never applied as such (a concrete
    /// codec is chosen first), and reads as `none`.
    var codecID: Int32 {
        switch self {
        case .none, .auto: return Int32(EF_CODEC_NONE.rawValue)
        case .lz4, .lz4Fast: return Int32(EF_CODEC_LZ4.rawValue)
        case .zstd: return Int32(EF_CODEC_ZSTD.rawValue)
        }
    }

    /// The codecs a peer must support for this setting (bit `1 << codecID`): all of them for `auto`.
    var codecMask: UInt8 {
        switch self {
        case .auto:
            return 1 << UInt8(EF_CODEC_NONE.rawValue) | 1 << UInt8(EF_CODEC_LZ4.rawValue)
                | 1 << UInt8(EF_CODEC_ZSTD.rawValue)
        default: return 1 << UInt8(codecID)
        }
    }

    var level: Int32 {
        switch self {
        case .zstd(let level): return Int32(level)
        case .lz4Fast(let acceleration): return Int32(acceleration)
        default: return 0
        }
    }
}

/// Reusable compression contexts (`ef_codec`): one per thread, created once, used for many buffers.
///
/// Not thread-safe: give each thread its own.
public final class Codec {
    let handle: OpaquePointer

    /// - Throws: `ElasticFlowError.core(.outOfMemory, …)` when the contexts cannot be made.
    public init() throws(ElasticFlowError) {
        guard let handle = ef_codec_create() else { throw .core(.outOfMemory, operation: "creating codec contexts") }
        self.handle = handle
    }

    deinit { ef_codec_free(handle) }

    /// The one refusal of a buffer declaring more than the decompression limit (a zstd or lz4
    /// bomb), worded the same wherever it is met: a worker's parcel, a master's result.
    static func overLimit(_ declared: UInt64, _ limit: Int) -> ElasticFlowError {
        .core(
            .tooBig,
            operation:
                "decompressing a buffer that declares \(declared) bytes, over the \(ByteSize.describe(limit)) limit")
    }

    /// Compresses bytes into a self-describing parcel buffer (codec and size recorded in its header).
    /// Calls `ef_codec_compress`.
    /// - Throws: `ElasticFlowError.invalidArgument` for `auto` (choose a codec first).
    public func compress(_ bytes: [UInt8], with compression: Compression) throws(ElasticFlowError) -> [UInt8] {
        guard compression != .auto else { throw .invalidArgument("compressing with auto: choose a codec first") }
        let bound = ef_codec_bound(compression.codecID, bytes.count)
        guard bound > 0 else { throw .core(.invalidArgument, operation: "compressing \(bytes.count) bytes") }
        var output = [UInt8](repeating: 0, count: bound)
        let written = bytes.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { destination in
                ef_codec_compress(
                    handle, compression.codecID, compression.level, source.baseAddress, source.count,
                    destination.baseAddress, destination.count)
            }
        }
        try check(written, "compressing with \(compression)")
        output.removeSubrange(written...)
        return output
    }

    /// Decompresses a parcel buffer, refusing one that would grow past `limit` bytes
    /// (a decompression bomb) or that is corrupt. Calls `ef_codec_decompress`.
    public func decompress(_ bytes: [UInt8], limit: Int) throws(ElasticFlowError) -> [UInt8] {
        var codec: Int32 = 0
        var rawLength: UInt64 = 0
        try bytes.withUnsafeBufferPointer { (source) throws(ElasticFlowError) in
            _ = try check(ef_codec_peek(source.baseAddress, source.count, &codec, &rawLength), "reading parcel header")
        }
        guard rawLength <= UInt64(limit) else { throw Self.overLimit(rawLength, limit) }
        var output = [UInt8](repeating: 0, count: Int(rawLength))
        let written = bytes.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { destination in
                ef_codec_decompress(
                    handle, source.baseAddress, source.count, destination.baseAddress, destination.count, limit)
            }
        }
        try check(written, "decompressing")
        return output
    }

    /// Compresses bytes into `output` (grown to the codec's bound when needed).
    /// - Returns: the compressed size, also set as `output.count`.
    func compress(_ bytes: UnsafeRawBufferPointer, into output: ParcelBuffer, with compression: Compression)
        throws(ElasticFlowError) -> Int
    {
        guard compression != .auto else { throw .invalidArgument("compressing with auto: choose a codec first") }
        let bound = ef_codec_bound(compression.codecID, bytes.count)
        guard bound > 0 else { throw .core(.invalidArgument, operation: "compressing \(bytes.count) bytes") }
        output.count = 0
        if output.capacity < bound { output.grow(to: bound) }
        let written = ef_codec_compress(
            handle, compression.codecID, compression.level, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
            bytes.count, output.base.assumingMemoryBound(to: UInt8.self), output.capacity)
        try check(written, "compressing with \(compression)")
        output.count = written
        return written
    }

    /// Decompresses a parcel buffer into `output` (grown to its recorded size when that is within
    /// `limit`). - Returns: the decompressed size, also set as `output.count`.
    func decompress(_ bytes: UnsafeRawBufferPointer, into output: ParcelBuffer, limit: Int) throws(ElasticFlowError)
        -> Int
    {
        var codec: Int32 = 0
        var rawLength: UInt64 = 0
        try check(
            ef_codec_peek(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &codec, &rawLength),
            "reading parcel header")
        guard rawLength <= UInt64(limit) else { throw Self.overLimit(rawLength, limit) }
        output.count = 0
        if output.capacity < Int(rawLength) { output.grow(to: Int(rawLength)) }
        let written = ef_codec_decompress(
            handle, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count,
            output.base.assumingMemoryBound(to: UInt8.self), output.capacity, limit)
        try check(written, "decompressing")
        output.count = written
        return written
    }
}

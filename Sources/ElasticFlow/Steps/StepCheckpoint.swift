/// The two binary files of a step journal, both little-endian, both closed by a CRC32C of every byte
/// before it, so a torn or flipped file is refused rather than half-believed.
///
/// `checkpoint` (magic `EFCK`):
///
///     offset  size  field
///     0       4     magic "EFCK"
///     4       4     version (1)
///     8       4     step
///     12      8     bytes of receipts.log made durable (fsync) before this checkpoint was written
///     20      8     N, the number of aggregated receipts
///     28      8*N   their sequence numbers, strictly ascending
///     28+8N   8     L, the length of the aggregate
///     36+8N   L     the aggregate's serialized bytes (whatever the task's aggregation serializes)
///     36+8N+L 4     CRC32C of bytes 0 ..< 36+8N+L
///
/// `result` (magic `EFRS`): magic, version (1), step, L (8 bytes), L bytes of the final aggregate, CRC32C.
struct StepCheckpoint: Equatable {
    static let version: UInt32 = 1

    var step: UInt32
    /// Length of receipts.log when its fsync preceded this checkpoint: the lines before it are durable,
    /// so a malformed one there is corruption, not a crash's torn tail.
    var durableLogLength: UInt64
    /// Sorted ascending, no duplicates.
    var aggregated: [UInt64]
    var aggregate: [UInt8]

    init(step: UInt32, durableLogLength: UInt64, aggregated: [UInt64], aggregate: [UInt8]) {
        self.step = step
        self.durableLogLength = durableLogLength
        self.aggregated = aggregated
        self.aggregate = aggregate
    }

    /// The file's bytes.
    func encoded() -> [UInt8] {
        var bytes = JournalBytes.header(magic: JournalBytes.checkpointMagic, version: Self.version, step: step)
        bytes.reserveCapacity(40 + aggregated.count * 8 + aggregate.count)
        JournalBytes.append(durableLogLength, to: &bytes)
        JournalBytes.append(UInt64(aggregated.count), to: &bytes)
        for sequence in aggregated { JournalBytes.append(sequence, to: &bytes) }
        JournalBytes.append(UInt64(aggregate.count), to: &bytes)
        bytes.append(contentsOf: aggregate)
        JournalBytes.appendChecksum(to: &bytes)
        return bytes
    }

    /// Decodes and verifies a checkpoint file.
    /// - Parameters:
    ///   - bytes: the whole file.
    ///   - path: the file's path, for errors.
    ///   - step: the step the file must belong to.
    /// - Throws: `ElasticFlowError.journal` naming the file when it is truncated, corrupt or another step's.
    init(decoding bytes: [UInt8], path: String, step: UInt32) throws(ElasticFlowError) {
        var reader = try JournalBytes.Reader(
            bytes, magic: JournalBytes.checkpointMagic, version: Self.version, step: step, path: path,
            minimumSize: 40)
        self.step = step
        durableLogLength = try reader.u64()
        let count = try reader.u64()
        guard count <= UInt64(reader.remaining / 8) else {
            throw JournalBytes.corrupt(path, "truncated: it claims \(count) aggregated receipts")
        }
        var aggregated: [UInt64] = []
        aggregated.reserveCapacity(Int(count))
        for _ in 0..<count {
            let sequence = try reader.u64()
            if let last = aggregated.last, sequence <= last {
                throw JournalBytes.corrupt(path, "sequence numbers not strictly ascending at \(sequence)")
            }
            aggregated.append(sequence)
        }
        self.aggregated = aggregated
        aggregate = try reader.lengthPrefixedBytes()
        try reader.finish()
    }
}

/// The final aggregate of a completed step, as the `result` file frames it (see `StepCheckpoint`).
enum StepResultFile {
    static let version: UInt32 = 1

    static func encode(step: UInt32, result: [UInt8]) -> [UInt8] {
        var bytes = JournalBytes.header(magic: JournalBytes.resultMagic, version: version, step: step)
        bytes.reserveCapacity(24 + result.count)
        JournalBytes.append(UInt64(result.count), to: &bytes)
        bytes.append(contentsOf: result)
        JournalBytes.appendChecksum(to: &bytes)
        return bytes
    }

    /// - Throws: `ElasticFlowError.journal` naming the file when it is truncated, corrupt or another step's.
    static func decode(_ bytes: [UInt8], path: String, step: UInt32) throws(ElasticFlowError) -> [UInt8] {
        var reader = try JournalBytes.Reader(
            bytes, magic: JournalBytes.resultMagic, version: version, step: step, path: path, minimumSize: 24)
        let result = try reader.lengthPrefixedBytes()
        try reader.finish()
        return result
    }
}

/// Little-endian encoding and checked decoding shared by the checkpoint and result files.
enum JournalBytes {
    static let checkpointMagic: [UInt8] = Array("EFCK".utf8)
    static let resultMagic: [UInt8] = Array("EFRS".utf8)

    /// The reason may quote the file (a state, a compression, a key): it is made one line and
    /// cut, so a damaged or hostile file cannot print several lines or megabytes as its error.
    static func corrupt(_ path: String, _ reason: String) -> ElasticFlowError {
        .journal("corrupt step journal file '\(path)': \(oneLine(reason, limit: 300))")
    }

    /// Text from a file fit for a one-line error (`PeerText.escaped`): control characters and
    /// line separators escaped, at most `limit` bytes shown.
    static func oneLine(_ text: String, limit: Int) -> String { PeerText.escaped(text, limit: limit) }

    static func header(magic: [UInt8], version: UInt32, step: UInt32) -> [UInt8] {
        var bytes = magic
        append(version, to: &bytes)
        append(step, to: &bytes)
        return bytes
    }

    static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    static func appendChecksum(to bytes: inout [UInt8]) {
        let checksum = bytes.withUnsafeBytes { crc32c($0) }
        append(checksum, to: &bytes)
    }

    /// Reads a verified file front to back; every read is bounds-checked against the bytes before the CRC.
    struct Reader {
        private let bytes: [UInt8]
        private let path: String
        private var position = 0
        /// Where the CRC starts: the end of the readable fields.
        private let end: Int

        /// Checks size, magic, version, CRC and step, in that order, so the error names the first thing wrong.
        init(
            _ bytes: [UInt8], magic: [UInt8], version: UInt32, step: UInt32, path: String, minimumSize: Int
        ) throws(ElasticFlowError) {
            self.bytes = bytes
            self.path = path
            end = bytes.count - 4
            guard bytes.count >= minimumSize else {
                throw corrupt(path, "truncated: \(bytes.count) bytes, at least \(minimumSize) expected")
            }
            guard Array(bytes[0..<4]) == magic else {
                throw corrupt(path, "bad magic (expected \"\(String(decoding: magic, as: UTF8.self))\")")
            }
            position = 4
            let fileVersion: UInt32 = try read()
            guard fileVersion == version else {
                throw corrupt(path, "unsupported version \(fileVersion) (this program reads version \(version))")
            }
            let stored: UInt32 = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: end, as: UInt32.self) }
            let computed = bytes.withUnsafeBytes { crc32c(UnsafeRawBufferPointer(rebasing: $0[..<end])) }
            guard UInt32(littleEndian: stored) == computed else {
                throw corrupt(
                    path,
                    "checksum mismatch (stored \(hex(UInt32(littleEndian: stored))), computed \(hex(computed))):"
                        + " the file is truncated or damaged")
            }
            let fileStep: UInt32 = try read()
            guard fileStep == step else { throw corrupt(path, "it belongs to step \(fileStep), not \(step)") }
        }

        var remaining: Int { end - position }

        private mutating func read<T: FixedWidthInteger>() throws(ElasticFlowError) -> T {
            let size = MemoryLayout<T>.size
            guard remaining >= size else { throw corrupt(path, "truncated: a field runs past the checksum") }
            let value = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: position, as: T.self) }
            position += size
            return T(littleEndian: value)
        }

        mutating func u64() throws(ElasticFlowError) -> UInt64 { try read() }

        mutating func lengthPrefixedBytes() throws(ElasticFlowError) -> [UInt8] {
            let length = try u64()
            guard length <= UInt64(remaining) else {
                throw corrupt(path, "truncated: it claims \(length) bytes of aggregate, \(remaining) are left")
            }
            let slice = bytes[position..<position + Int(length)]
            position += Int(length)
            return Array(slice)
        }

        /// - Throws: when bytes are left over between the last field and the CRC.
        func finish() throws(ElasticFlowError) {
            guard position == end else { throw corrupt(path, "\(end - position) unexpected bytes before the checksum") }
        }
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}

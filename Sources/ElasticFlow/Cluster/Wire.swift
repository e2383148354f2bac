internal import CElasticFlow

/// Frame types (docs/protocol.md); the values are the C core's `EF_FRAME_*`.
enum FrameType: UInt8 {
    case hello = 1, auth = 2, welcome = 3, heartbeat = 4, parcel = 5, result = 6, error = 7, bye = 8, step = 9
}

/// Frame flag: the payload is a compressed parcel buffer (`EF_FRAME_F_COMPRESSED`).
let frameFlagCompressed = UInt8(EF_FRAME_F_COMPRESSED)
/// RESULT flag: sent late on purpose (chaos).
let frameFlagFaultDelayed: UInt8 = 0x02
/// RESULT flag: a second copy sent on purpose (chaos).
let frameFlagFaultDuplicate: UInt8 = 0x04
/// ERROR flag: the failure was injected (chaos).
let frameFlagFaultInjected: UInt8 = 0x08
/// ERROR flag: the parcel's bytes themselves are refused (a word over the word-size cap): every
/// node would fail it alike, so the master fails the step at once with this reason instead of
/// retrying it `maxAttempts` times.
let frameFlagBadInput: UInt8 = 0x10

extension ElasticFlowError {
    /// Whether this failure comes from the parcel's bytes, not from the node (see `frameFlagBadInput`).
    var isBadInput: Bool {
        if case .core(.wordTooLong, _) = self { return true }
        return false
    }
}
/// PARCEL frames carry the attempt number (1...15, saturating) in the high four flag bits.
func parcelFlags(compressed: Bool, attempt: Int) -> UInt8 {
    (compressed ? frameFlagCompressed : 0) | UInt8(min(max(attempt, 1), 15)) << 4
}
func attempt(fromParcelFlags flags: UInt8) -> Int { Int(flags >> 4) }

/// Writes little-endian fields.
struct WireWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func raw(_ value: [UInt8]) { bytes.append(contentsOf: value) }
    /// A string of at most `limit` (≤ 65535) UTF-8 bytes, length-prefixed.
    mutating func string(_ value: String, limit: Int = 65535) {
        let utf8 = Array(value.utf8.prefix(min(limit, 65535)))
        u16(UInt16(utf8.count))
        raw(utf8)
    }
}

/// Reads little-endian fields, bounds-checked: a short or malformed payload throws.
struct WireReader {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    private mutating func take(_ count: Int) throws(ElasticFlowError) -> ArraySlice<UInt8> {
        guard count <= bytes.count - offset else { throw .core(.malformed, operation: "reading a handshake message") }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    mutating func u8() throws(ElasticFlowError) -> UInt8 { try take(1).first! }
    mutating func u16() throws(ElasticFlowError) -> UInt16 {
        let b = try take(2)
        return UInt16(b[b.startIndex]) | UInt16(b[b.startIndex + 1]) << 8
    }
    mutating func u32() throws(ElasticFlowError) -> UInt32 {
        let b = try take(4)
        return b.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
    mutating func u64() throws(ElasticFlowError) -> UInt64 {
        let b = try take(8)
        return b.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
    mutating func raw(_ count: Int) throws(ElasticFlowError) -> [UInt8] { Array(try take(count)) }
    mutating func string() throws(ElasticFlowError) -> String {
        let count = Int(try u16())
        return String(decoding: try take(count), as: UTF8.self)
    }
}

/// How the frames after the HELLOs are sealed (HELLO's session byte): always authenticated
/// (AES-256-GCM tag), and with `encrypted` also encrypted.
enum SessionMode: UInt8, Sendable {
    case authenticated = 0, encrypted = 1

    init(encrypt: Bool) { self = encrypt ? .encrypted : .authenticated }
    var encrypts: Bool { self == .encrypted }
}

/// HELLO, both ways: protocol version, role, supported codecs, the session mode, a fresh nonce,
/// and — from the worker — its proof of the cookie over both nonces; then threads and the name.
struct Hello {
    static let masterRole = UInt8(ascii: "M")
    static let workerRole = UInt8(ascii: "W")
    /// Bit i set: codec i (EF_CODEC_*) is supported.
    static let allCodecs: UInt8 = 0b111
    /// Names are cut to this many bytes, so a HELLO always fits the pre-authentication frame
    /// limit (`EventLoop.preauthPayload`).
    static let maxNameBytes = 1024

    var version: UInt16 = UInt16(EF_PROTOCOL_VERSION)
    var role: UInt8
    var codecs: UInt8 = Hello.allCodecs
    /// The master's choice; the worker answers with the mode it accepted.
    var session: UInt8 = SessionMode.authenticated.rawValue
    var nonce: [UInt8]
    var proof: [UInt8] = []  // 32 bytes from the worker, empty from the master
    var threads: UInt16 = 1
    var name: String = ""

    func encoded() -> [UInt8] {
        var writer = WireWriter()
        writer.u16(version)
        writer.u8(role)
        writer.u8(codecs)
        writer.u8(session)
        writer.raw(nonce)
        writer.u8(UInt8(proof.count))
        writer.raw(proof)
        writer.u16(threads)
        writer.string(name, limit: Hello.maxNameBytes)
        return writer.bytes
    }

    init(
        role: UInt8, session: SessionMode = .authenticated, nonce: [UInt8], proof: [UInt8] = [], threads: Int,
        name: String
    ) {
        self.role = role
        self.session = session.rawValue
        self.nonce = nonce
        self.proof = proof
        self.threads = UInt16(clamping: threads)
        self.name = name
    }

    init(decoding bytes: [UInt8]) throws(ElasticFlowError) {
        var reader = WireReader(bytes)
        version = try reader.u16()
        // Another version's fields may differ past this point: the caller refuses by version.
        guard version == UInt16(EF_PROTOCOL_VERSION) else {
            role = 0
            nonce = []
            return
        }
        role = try reader.u8()
        codecs = try reader.u8()
        session = try reader.u8()
        nonce = try reader.raw(Int(EF_AUTH_NONCE_SIZE))
        let proofLength = Int(try reader.u8())
        guard proofLength == 0 || proofLength == Int(EF_SHA256_SIZE) else {
            throw .core(.malformed, operation: "reading a HELLO")
        }
        proof = try reader.raw(proofLength)
        threads = try reader.u16()
        name = try reader.string()
    }
}

/// The cookie challenge-response (C core: `ef_auth_proof`, `ef_auth_verify`, HMAC-SHA256).
enum Authentication {
    static func nonce() throws(ElasticFlowError) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: Int(EF_AUTH_NONCE_SIZE))
        try check(ef_auth_nonce(&nonce), "drawing a nonce")
        return nonce
    }

    static func proof(cookie: [UInt8], role: UInt8, own: [UInt8], peer: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EF_SHA256_SIZE))
        ef_auth_proof(cookie, cookie.count, role, own, peer, &out)
        return out
    }

    static func verify(cookie: [UInt8], peerRole: UInt8, peer: [UInt8], own: [UInt8], proof: [UInt8]) -> Bool {
        guard proof.count == Int(EF_SHA256_SIZE), peer.count == Int(EF_AUTH_NONCE_SIZE) else { return false }
        return ef_auth_verify(cookie, cookie.count, peerRole, peer, own, proof) == 0
    }
}

/// The two keys of one connection (`ef_session_derive`: HKDF-SHA256 of the cookie, salted with
/// both nonces), one per direction.
struct SessionKeys {
    fileprivate(set) var raw = ef_session_keys()

    init(cookie: [UInt8], masterNonce: [UInt8], workerNonce: [UInt8]) throws(ElasticFlowError) {
        guard masterNonce.count == Int(EF_AUTH_NONCE_SIZE), workerNonce.count == Int(EF_AUTH_NONCE_SIZE) else {
            throw .core(.malformed, operation: "deriving session keys")
        }
        try check(ef_session_derive(cookie, cookie.count, masterNonce, workerNonce, &raw), "deriving session keys")
    }
}

/// STEP, master to worker: what the parcels of a step are for (task name and options).
struct StepAnnouncement: Codable {
    var step: UInt32
    var task: String
    var options: TaskOptions
    /// How results are compressed (`Compression(parsing:)` syntax).
    var compression: String
    /// Fault injection the worker takes part in, and the attempt limit it must respect.
    var chaos: ChaosSettings?
    var maxAttempts: Int
    /// Shared-input mode: the sources' paths, which every node reads itself (PARCELs then carry
    /// a `RangeRequest`); nil in copy mode.
    var sharedSources: [String]? = nil
    /// Shared-input mode: the indices of the sources split by the frames of their seek table (zstd's
    /// seekable format); a PARCEL's range is then the compressed bytes of a run of whole frames.
    var seekableSources: [Int]? = nil
    /// How the worker may combine results (nil: one RESULT per parcel).
    var combine: CombineSettings? = nil
    /// The longest word the task accepts (nil: the default cap, `Limits.defaultMaxWordSize`).
    var maxWordSize: Int? = nil

    /// Checks what a master asked for against `Limits` (a worker refuses the step otherwise):
    /// chaos is checked by its decoding already.
    /// - Throws: `ElasticFlowError.invalidArgument` naming the first value out of range.
    func validate() throws(ElasticFlowError) {
        try Limits.check(maxAttempts, in: Limits.maxAttempts, "the STEP's maxAttempts")
        if let combine {
            try Limits.check(combine.maxReceipts, in: 1...CombineSettings.receiptLimit, "the STEP's combine")
            try Limits.check(combine.maxDelay, in: Limits.combineDelay, "the STEP's combine delay")
        }
        if let maxWordSize { try Limits.check(bytes: maxWordSize, in: Limits.maxWordSize, "the STEP's maxWordSize") }
    }
}

/// CRC32C of bytes (the C core's `ef_crc32c`, hardware-accelerated where possible).
func crc32c(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    ef_crc32c(0, bytes.baseAddress, bytes.count)
}

/// CRC32C and line count (newlines, plus a last line without one) in one pass (`ef_crc32c_lines`).
extension ProcessedRange {
    /// The digest of the bytes a copy-mode parcel held (`frameFlagDigest`): their length, lines
    /// and CRC32C (start and file size 0: the worker knows neither).
    init(digestOf bytes: UnsafeRawBufferPointer) {
        let (checksum, lines) = crc32cAndLines(bytes)
        self.init(start: 0, length: UInt64(bytes.count), lines: lines, checksum: checksum, fileSize: 0)
    }

    /// The same digest, taken while the bytes are copied to `destination` (`ef_crc32c_lines_copy`:
    /// one pass), which must have room for them.
    init(digestOf bytes: UnsafeRawBufferPointer, copyingTo destination: UnsafeMutableRawPointer) {
        var newlines: UInt64 = 0
        let checksum = ef_crc32c_lines_copy(0, destination, bytes.baseAddress, bytes.count, &newlines)
        self.init(
            start: 0, length: UInt64(bytes.count), lines: lineCount(newlines: newlines, of: bytes), checksum: checksum,
            fileSize: 0)
    }
}

func crc32cAndLines(_ bytes: UnsafeRawBufferPointer) -> (checksum: UInt32, lines: UInt64) {
    var newlines: UInt64 = 0
    let checksum = ef_crc32c_lines(0, bytes.baseAddress, bytes.count, &newlines)
    return (checksum, lineCount(newlines: newlines, of: bytes))
}

/// Lines in bytes holding `newlines` newlines: one more when the last line has none.
func lineCount(newlines: UInt64, of bytes: UnsafeRawBufferPointer) -> UInt64 {
    newlines + (bytes.last.map { $0 == 0x0A ? 0 : 1 } ?? 0)
}

internal import CElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// An error code of the C core (`EF_E*`), with the core's own description (`ef_strerror`).
public struct CoreErrorCode: Hashable, Sendable, CustomStringConvertible {
    /// The negative `EF_E*` value.
    public let rawValue: Int32

    /// Wraps a code the core returned; any negative value, known or not.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// `EF_ENEEDMORE`: a parser needs more bytes to finish the frame.
    public static let needMore = CoreErrorCode(rawValue: Int32(EF_ENEEDMORE))
    /// `EF_ENOMEM`: an allocation failed.
    public static let outOfMemory = CoreErrorCode(rawValue: Int32(EF_ENOMEM))
    /// `EF_EINVAL`: an argument is out of range (a codec level, a mismatch).
    public static let invalidArgument = CoreErrorCode(rawValue: Int32(EF_EINVAL))
    /// `EF_ETOOBIG`: decompressed data would exceed the limit given.
    public static let tooBig = CoreErrorCode(rawValue: Int32(EF_ETOOBIG))
    /// `EF_ECORRUPT`: compressed data is corrupt or disagrees with its header.
    public static let corrupt = CoreErrorCode(rawValue: Int32(EF_ECORRUPT))
    /// `EF_EBADMAGIC`: a frame or buffer does not start with the expected magic.
    public static let badMagic = CoreErrorCode(rawValue: Int32(EF_EBADMAGIC))
    /// `EF_EVERSION`: a frame's protocol version is not supported.
    public static let unsupportedVersion = CoreErrorCode(rawValue: Int32(EF_EVERSION))
    /// `EF_ETOOLONG`: a frame's payload is longer than the maximum allowed.
    public static let frameTooLong = CoreErrorCode(rawValue: Int32(EF_ETOOLONG))
    /// `EF_ECHECKSUM`: a frame's payload checksum does not match.
    public static let checksum = CoreErrorCode(rawValue: Int32(EF_ECHECKSUM))
    /// `EF_EHDRCHECKSUM`: a frame header's checksum does not match.
    public static let headerChecksum = CoreErrorCode(rawValue: Int32(EF_EHDRCHECKSUM))
    /// `EF_ECODEC`: an unknown codec id.
    public static let unknownCodec = CoreErrorCode(rawValue: Int32(EF_ECODEC))
    /// `EF_ESPACE`: the destination buffer is too small.
    public static let noSpace = CoreErrorCode(rawValue: Int32(EF_ESPACE))
    /// `EF_EFORMAT`: serialized data is malformed (truncated, out of bounds, a bad field).
    public static let malformed = CoreErrorCode(rawValue: Int32(EF_EFORMAT))
    /// `EF_ESYS`: a system call failed.
    public static let system = CoreErrorCode(rawValue: Int32(EF_ESYS))
    /// `EF_EAUTH`: authentication failed (a wrong cookie, a forged proof).
    public static let authentication = CoreErrorCode(rawValue: Int32(EF_EAUTH))
    /// `EF_ECLOSED`: the connection is closed.
    public static let closed = CoreErrorCode(rawValue: Int32(EF_ECLOSED))
    /// `EF_EBUSY`: back-pressure; the peer's send queue is over its limit.
    public static let busy = CoreErrorCode(rawValue: Int32(EF_EBUSY))
    /// `EF_EWORDTOOLONG`: a word is longer than the counter's cap.
    public static let wordTooLong = CoreErrorCode(rawValue: Int32(EF_EWORDTOOLONG))
    /// `EF_EOVERFLOW`: a count would overflow 64 bits (merges refuse rather than saturate).
    public static let overflow = CoreErrorCode(rawValue: Int32(EF_EOVERFLOW))

    /// The core's own text for the code (`ef_strerror`).
    public var description: String { String(cString: ef_strerror(rawValue)) }
}

/// Every error ElasticFlow throws. Its `description` is one line meant for a person.
public enum ElasticFlowError: Error, Equatable, CustomStringConvertible {
    /// The C core refused an operation (`operation` names what was being done).
    case core(CoreErrorCode, operation: String)
    /// A file or stream could not be opened, read or written.
    case io(path: String, operation: String, errno: Int32)
    /// A path names a directory where a file is needed.
    case isDirectory(path: String)
    /// A value given by the user is out of range or malformed.
    case invalidArgument(String)
    /// The cluster could not run a step: unreachable or refused workers, a failed parcel, a lost
    /// cluster. The message says which node and why.
    case cluster(String)
    /// Serialized data (a `FlowValue` encoding, a task result) is truncated or malformed.
    case malformedValue(String)
    /// A task failed (`name` is the task's registered name, or what was being done).
    case task(name: String, message: String)
    /// A step journal (the step-data directory) is missing, corrupt, in use or inconsistent with the
    /// step being run. The message names the file and says why.
    case journal(String)

    /// One line for a person: what failed and why, naming the file, node or setting.
    public var description: String {
        switch self {
        case .core(let code, let operation):
            return "\(operation): \(code)"
        case .io(let path, let operation, let errno):
            return "cannot \(operation) '\(path)': \(String(cString: strerror(errno)))"
        case .isDirectory(let path):
            return "cannot read '\(path)': Is a directory"
        case .invalidArgument(let message):
            return message
        case .cluster(let message):
            return message
        case .malformedValue(let message):
            return "malformed value: \(message)"
        case .task(let name, let message):
            return "task '\(name)': \(message)"
        case .journal(let message):
            return message
        }
    }
}

/// Turns a C core return value into a Swift result: `>= 0` passes through, negative throws.
@inline(__always)
@discardableResult
func check<T: BinaryInteger>(_ value: T, _ operation: @autoclosure () -> String) throws(ElasticFlowError) -> T {
    if value < 0 {
        throw .core(CoreErrorCode(rawValue: Int32(value)), operation: operation())
    }
    return value
}

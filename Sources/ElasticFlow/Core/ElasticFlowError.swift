internal import CElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// An error code of the C core (`EF_E*`), with the core's own description (`ef_strerror`).
public struct CoreErrorCode: Hashable, Sendable, CustomStringConvertible {
    /// The negative `EF_E*` value.
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let needMore = CoreErrorCode(rawValue: Int32(EF_ENEEDMORE))
    public static let outOfMemory = CoreErrorCode(rawValue: Int32(EF_ENOMEM))
    public static let invalidArgument = CoreErrorCode(rawValue: Int32(EF_EINVAL))
    public static let tooBig = CoreErrorCode(rawValue: Int32(EF_ETOOBIG))
    public static let corrupt = CoreErrorCode(rawValue: Int32(EF_ECORRUPT))
    public static let badMagic = CoreErrorCode(rawValue: Int32(EF_EBADMAGIC))
    public static let unsupportedVersion = CoreErrorCode(rawValue: Int32(EF_EVERSION))
    public static let frameTooLong = CoreErrorCode(rawValue: Int32(EF_ETOOLONG))
    public static let checksum = CoreErrorCode(rawValue: Int32(EF_ECHECKSUM))
    public static let headerChecksum = CoreErrorCode(rawValue: Int32(EF_EHDRCHECKSUM))
    public static let unknownCodec = CoreErrorCode(rawValue: Int32(EF_ECODEC))
    public static let noSpace = CoreErrorCode(rawValue: Int32(EF_ESPACE))
    public static let malformed = CoreErrorCode(rawValue: Int32(EF_EFORMAT))
    public static let system = CoreErrorCode(rawValue: Int32(EF_ESYS))
    public static let authentication = CoreErrorCode(rawValue: Int32(EF_EAUTH))
    public static let closed = CoreErrorCode(rawValue: Int32(EF_ECLOSED))
    public static let busy = CoreErrorCode(rawValue: Int32(EF_EBUSY))
    public static let wordTooLong = CoreErrorCode(rawValue: Int32(EF_EWORDTOOLONG))
    public static let overflow = CoreErrorCode(rawValue: Int32(EF_EOVERFLOW))

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

internal import CElasticFlow

/// Versions of the library and of its C core.
public enum ElasticFlowVersion {
    /// The C core's version as linked (`ef_version_string`).
    public static var core: String { String(cString: ef_version_string()) }
    /// True when the linked C core is the one this Swift layer was compiled against.
    public static var coreMatchesHeader: Bool {
        ef_version_number() == UInt32(EF_VERSION_MAJOR * 10000 + EF_VERSION_MINOR * 100 + EF_VERSION_PATCH)
    }
    /// The wire protocol version spoken by this build.
    public static let wireProtocol = Int(EF_PROTOCOL_VERSION)
}

/// Whether input files are decompressed: `auto` (the default) reads a gzip, zstd, lz4 or bzip2
/// file, recognised by its first bytes (never its name), as the text it holds; `none` counts the
/// bytes as they are (what every version before 0.9 did).
public enum Decompression: String, Hashable, Sendable, CustomStringConvertible {
    /// Compressed sources, told by their first bytes, are read as the text they hold.
    case auto
    /// Sources are read as raw bytes, compressed or not.
    case none

    /// Parses `auto` or `none`.
    /// - Throws: `ElasticFlowError.invalidArgument` for anything else, naming `setting`.
    public init(parsing text: String, _ setting: String = "--decompress") throws(ElasticFlowError) {
        guard let value = Decompression(rawValue: text.lowercased()) else {
            throw .invalidArgument("invalid \(setting) '\(text)': expected auto or none")
        }
        self = value
    }

    /// `auto` or `none`.
    public var description: String { rawValue }
}

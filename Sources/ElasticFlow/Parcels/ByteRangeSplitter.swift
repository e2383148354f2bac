#if canImport(Glibc)
    import Glibc
#endif

/// What the master saw of a shared source when it split it: its size and modification time. A
/// retry, the end of the step or a resume that finds other values fails the step (the file
/// changed under it), so a result never mixes two versions of a file.
public struct SourceFingerprint: Hashable, Sendable, Codable {
    /// The file's size in bytes.
    public var size: UInt64
    /// Modification time in nanoseconds since the epoch.
    public var modified: Int64

    /// A fingerprint of the given size (bytes) and modification time (nanoseconds since the epoch).
    public init(size: UInt64, modified: Int64) {
        self.size = size
        self.modified = modified
    }

    /// The first of `paths` whose file is no longer what `then` recorded (the one check both
    /// modes run before a retry and at the end of a step).
    /// - Returns: a one-line reason naming the file, or nil when none changed.
    static func firstChange(paths: [String], then: [SourceFingerprint], naming prefix: String = "") -> String? {
        for (path, then) in zip(paths, then) {
            guard let now = try? SourceFingerprint.of(path: path) else {
                return "\(prefix)'\(path)' can no longer be read by the master"
            }
            if now != then {
                return "\(prefix)'\(path)' changed during the step (size \(then.size) -> \(now.size)"
                    + (now.modified != then.modified ? ", modification time changed)" : ")")
            }
        }
        return nil
    }

    /// Stats a path (following links).
    /// - Throws: `ElasticFlowError.io` when it cannot be stat'ed, `.isDirectory` for a directory.
    static func of(path: String) throws(ElasticFlowError) -> SourceFingerprint {
        var info = stat()
        guard stat(path, &info) == 0 else { throw .io(path: path, operation: "stat", errno: errno) }
        if info.st_mode & S_IFMT == S_IFDIR { throw .isDirectory(path: path) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw .invalidArgument("'\(path)' is not a regular file: --shared-input splits files by size")
        }
        return SourceFingerprint(
            size: UInt64(info.st_size),
            modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))
    }
}

/// One split of a shared source: a byte range cut by size alone, without reading the file. The
/// bytes a worker processes for it follow the ownership rule of `SplitReader`.
public struct ByteRange: Hashable, Sendable {
    /// Index of the source in the step's list.
    public var source: Int
    /// The first byte of the range in the file.
    public var offset: UInt64
    /// The range's length in bytes (the last split of a file may be shorter than the others).
    public var length: UInt64

    /// A range of `length` bytes from `offset` in the step's source number `source`.
    public init(source: Int, offset: UInt64, length: UInt64) {
        self.source = source
        self.offset = offset
        self.length = length
    }
}

/// Splits shared sources (files every node reads at the same path) into byte ranges of
/// `splitSize` by arithmetic alone: the master reads none of their bytes (Hadoop's
/// `FileInputFormat`, Dask's `read_bytes`). Empty files give no split. A zstd file in the
/// seekable format (decompression `auto`) is split by its seek table instead: each split is the
/// compressed range of a run of whole frames of about `splitSize` bytes of text, which a worker
/// decompresses alone (`SeekableReader`); the master reads only the table. Not thread-safe.
final class ByteRangeSplitter {
    let paths: [String]
    let splitSize: UInt64
    /// Each source as the master saw it when the step was planned.
    let fingerprints: [SourceFingerprint]
    /// The seek table of each seekable zstd source, nil for a source split by bytes.
    let tables: [SeekTable?]
    /// Each seekable source's splits, as runs of frames.
    private let runs: [[Range<Int>]]
    private var source = 0
    private var offset: UInt64 = 0
    private var run = 0

    /// Stats every source up front, so a missing file or a stream fails before any work.
    /// - Throws: `ElasticFlowError.invalidArgument` for standard input (it cannot be shared) or a
    ///   split size under 1; `.io`/`.isDirectory` for a source that cannot be used.
    ///   A seekable zstd file whose seek table is malformed throws `.invalidArgument` naming it.
    init(sources: [DataSource], splitSize: Int, decompression: Decompression = .none) throws(ElasticFlowError) {
        guard splitSize >= 1 else { throw .invalidArgument("parcel size must be at least 1 byte") }
        var paths: [String] = []
        var fingerprints: [SourceFingerprint] = []
        var tables: [SeekTable?] = []
        for source in sources {
            guard case .file(let path) = source else {
                throw .invalidArgument(
                    "--shared-input needs files every node can read; "
                        + (source.isCustom
                            ? "source '\(source)' is the app's own and cannot be shared (copy mode sends it)"
                            : "standard input cannot be shared"))
            }
            paths.append(path)
            let fingerprint = try SourceFingerprint.of(path: path)
            fingerprints.append(fingerprint)
            tables.append(
                decompression == .auto && SourceReader.format(ofFile: path) == InputDecoder.zstd
                    ? try Self.seekTable(path, size: fingerprint.size) : nil)
        }
        self.paths = paths
        self.fingerprints = fingerprints
        self.tables = tables
        runs = tables.map { $0?.runs(targetSize: splitSize) ?? [] }
        self.splitSize = UInt64(splitSize)
    }

    private static func seekTable(_ path: String, size: UInt64) throws(ElasticFlowError) -> SeekTable? {
        let fd = try DataSource.file(path).open()
        defer { close(fd) }
        return try SeekTable.load(fd: fd, size: size, name: path)
    }

    /// The indices of the seekable sources (a worker reads those splits as runs of frames).
    var seekableSources: [Int] { tables.indices.filter { tables[$0] != nil } }

    /// The bytes the processed ranges of source `index` must tile: its text (seekable) or the file.
    func processedSize(_ index: Int) -> UInt64 { tables[index]?.decompressedSize ?? fingerprints[index].size }

    /// Where the bytes processed for a split may start: in the split (bytes), or from its text's
    /// first byte to one past its last (a run of frames: its first record may start just past it).
    /// nil when the split is not a run of whole frames of a seekable source.
    func processedStarts(_ range: ByteRange) -> ClosedRange<UInt64>? {
        guard let table = tables[range.source] else { return range.offset...(range.offset + range.length - 1) }
        guard let run = table.run(compressedOffset: range.offset, length: range.length) else { return nil }
        let text = table.decompressedRange(run)
        return text.lowerBound...text.upperBound
    }

    /// Total bytes of every source.
    var totalBytes: UInt64 { fingerprints.reduce(0) { $0 + $1.size } }

    /// The next split, or nil when every source is split.
    func next() -> ByteRange? {
        while source < paths.count {
            if tables[source] != nil {
                if run < runs[source].count {
                    let (offset, length) = tables[source]!.compressedRange(runs[source][run])
                    run += 1
                    return ByteRange(source: source, offset: offset, length: length)
                }
                source += 1
                run = 0
                continue
            }
            let size = fingerprints[source].size
            if offset < size {
                let range = ByteRange(source: source, offset: offset, length: min(splitSize, size - offset))
                offset += range.length
                return range
            }
            source += 1
            offset = 0
        }
        return nil
    }

    /// Checks that the sources are still what they were when split.
    /// - Returns: a one-line reason naming the file, or nil when none changed.
    func changedSource() -> String? {
        SourceFingerprint.firstChange(paths: paths, then: fingerprints, naming: "shared input ")
    }
}

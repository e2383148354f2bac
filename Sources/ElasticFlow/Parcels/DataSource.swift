#if canImport(Glibc)
    import Glibc
#endif

/// Where a job's bytes come from.
public enum DataSource: Hashable, Sendable, CustomStringConvertible {
    /// A regular file (or anything `open(2)` can read that is not a directory).
    case file(String)
    /// The process's standard input, read once as a stream.
    case standardInput
    /// Bytes the app supplies (`ChunkSource`), read once per step in order, like a stream.
    case custom(any ChunkSource)

    /// `-` means standard input, anything else a file path (the shell convention).
    public init(argument: String) {
        self = argument == "-" ? .standardInput : .file(argument)
    }

    /// The path, `-` for standard input, or a custom source's name.
    public var description: String {
        switch self {
        case .file(let path): return path
        case .standardInput: return "-"
        case .custom(let source): return source.name
        }
    }

    /// Two custom sources are the same source when they have the same name.
    public static func == (left: DataSource, right: DataSource) -> Bool {
        switch (left, right) {
        case (.file(let a), .file(let b)): return a == b
        case (.standardInput, .standardInput): return true
        case (.custom(let a), .custom(let b)): return a.name == b.name
        default: return false
        }
    }

    /// Hashes what `==` compares: the path, standard input, or the custom source's name.
    public func hash(into hasher: inout Hasher) {
        switch self {
        case .file(let path):
            hasher.combine(0)
            hasher.combine(path)
        case .standardInput:
            hasher.combine(1)
        case .custom(let source):
            hasher.combine(2)
            hasher.combine(source.name)
        }
    }

    /// Opens the source for reading. The caller closes the descriptor.
    /// - Throws: `ElasticFlowError.io` when missing or unreadable, `.isDirectory` for a directory,
    ///   `.invalidArgument` for a custom source (it has no descriptor: `chunkReader()`).
    func open() throws(ElasticFlowError) -> Int32 {
        var info = stat()
        return try open(status: &info)
    }

    /// Opens the source for reading and fills `info` with its `fstat` (left as it is for standard
    /// input). The caller closes the descriptor.
    /// - Throws: as `open()`.
    func open(status info: inout stat) throws(ElasticFlowError) -> Int32 {
        switch self {
        case .custom(let source):
            throw .invalidArgument("source '\(source.name)' is not a file")
        case .standardInput:
            return STDIN_FILENO
        case .file(let path):
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { throw .io(path: path, operation: "open", errno: errno) }
            if fstat(fd, &info) != 0 {
                let error = errno
                close(fd)
                throw .io(path: path, operation: "stat", errno: error)
            }
            if info.st_mode & S_IFMT == S_IFDIR {
                close(fd)
                throw .isDirectory(path: path)
            }
            return fd
        }
    }

    /// Total bytes of text the sources hold when every one is a regular file, else nil (a
    /// stream's size is not known in advance). One `stat` each (Foundation's `attributesOfItem`
    /// costs about ten system calls a file: 0.3 s for 5,000 small files). With decompression
    /// `auto` a compressed file's text is counted, not its bytes: a seekable zstd file's from its
    /// seek table, and any other compressed file makes the total unknown (nil), so a progress bar
    /// never passes 100% or promises a wrong ETA. That costs a read of each file's first bytes.
    static func totalSize(of sources: [DataSource], decompression: Decompression = .none) -> UInt64? {
        var total: UInt64 = 0
        for source in sources {
            guard case .file(let path) = source else { return nil }
            var info = stat()
            guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
            if decompression == .auto, SourceReader.format(ofFile: path) != InputDecoder.plain {
                guard let text = SeekTable.textSize(ofFile: path) else { return nil }
                total += text
            } else {
                total += UInt64(info.st_size)
            }
        }
        return total
    }
}

extension DataSource {
    /// Whether the app supplies the bytes (`custom`).
    var isCustom: Bool {
        if case .custom = self { return true }
        return false
    }

    /// A new pass over a custom source's bytes.
    /// - Throws: `.invalidArgument` naming the source when it cannot start one.
    func chunkReader() throws(ElasticFlowError) -> any ChunkReader {
        guard case .custom(let source) = self else { throw .invalidArgument("'\(description)' is not a custom source") }
        do {
            return try source.chunks()
        } catch {
            throw .customSource(source.name, error)
        }
    }
}

extension ElasticFlowError {
    /// An error a custom source's code threw, with the source's name.
    static func customSource(_ name: String, _ error: any Error) -> ElasticFlowError {
        .invalidArgument("source '\(name)': \(PeerText.escaped(String(describing: error)))")
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// What `SourceList` does with an entry it cannot read: a missing path, a symlink that leads
/// nowhere (dangling, or a loop of links), a file or directory without read permission.
public enum UnreadableEntries: String, Sendable, CaseIterable {
    /// The first one is an error naming it, before anything is counted (the default).
    case fail
    /// Each is left out, and listed in `SourceList.skipped` with the reason.
    case skip
}

/// The sources of a job as a user names them: files, `-` (standard input), directories (every
/// regular file below them), and lists of names read from a file (`--files-from`).
///
/// A directory is walked recursively and its files come in byte-wise order of their paths (as
/// `find DIR -type f | LC_ALL=C sort` lists them), hidden files and directories included. A
/// symlink below it is followed when it leads to a regular file; one that leads to a directory
/// is not descended (so a link back up the tree cannot loop, and no file is counted twice
/// through two paths); FIFOs, sockets and devices below a directory are left out (name one as
/// an argument to read it). A path given as an argument is followed whatever it is.
public struct SourceList: Sendable {
    /// The sources, in order: the arguments' order, each directory's files sorted within it.
    public private(set) var sources: [DataSource] = []
    /// Entries left out under `.skip`, each with the one-line reason.
    public private(set) var skipped: [SkippedEntry] = []

    /// An entry left out, and why (one line that names it).
    public struct SkippedEntry: Hashable, Sendable {
        /// The entry as it was named or found (an argument, or a path below a directory).
        public let path: String
        /// One line that names the entry and says why it was left out.
        public let reason: String
    }

    /// Expands `arguments` (paths, `-`, directories) into sources.
    /// - Throws: `ElasticFlowError` under `.fail` for the first folder that cannot be read or
    ///   symlink that leads nowhere. A file that cannot be opened is kept in `sources` under
    ///   `.fail`: the job's check of its sources (`LocalWordCount.run`, `Master.run`) refuses it
    ///   before any work, with the message opening it gives (`cannot open 'PATH': …`).
    public init(expanding arguments: [String], unreadable: UnreadableEntries = .fail) throws(ElasticFlowError) {
        for argument in arguments {
            if argument == "-" {
                sources.append(.standardInput)
                continue
            }
            var info = stat()
            if stat(argument, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR {
                try walk(argument, unreadable: unreadable)  // in byte-wise order of the paths
            } else if unreadable == .skip, let error = Self.unreadable(argument) {
                skipped.append(SkippedEntry(path: argument, reason: error.description))
            } else {
                sources.append(.file(argument))  // opening it reports what is wrong
            }
        }
    }

    /// Adds the files below `directory` to `sources`, in byte-wise order of their paths with no
    /// sort of the whole list: each folder's entries are sorted by name, a subfolder's name read
    /// with the `/` after it (so `a.txt` < `a/…`, as `LC_ALL=C sort` puts them), and a subfolder
    /// is walked where it falls in that order.
    private mutating func walk(_ directory: String, unreadable: UnreadableEntries) throws(ElasticFlowError) {
        guard let stream = opendir(directory) else {
            let error = ElasticFlowError.io(path: directory, operation: "read directory", errno: errno)
            if unreadable == .fail { throw error }
            skipped.append(SkippedEntry(path: directory, reason: error.description))
            return
        }
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        var entries: [(name: String, kind: UInt8)] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name != "." && name != ".." else { continue }
            var kind = entry.pointee.d_type
            if kind == UInt8(DT_UNKNOWN) {  // some filesystems do not say: ask without following
                var info = stat()
                kind = lstat(prefix + name, &info) == 0 ? Self.kind(info.st_mode) : UInt8(DT_UNKNOWN)
            }
            entries.append((name, kind))
        }
        closedir(stream)
        // Sorted here, so the files and the entries reported or skipped come in the same order on
        // every run.
        entries.sort { Self.precedes($0.name, $0.kind == UInt8(DT_DIR), $1.name, $1.kind == UInt8(DT_DIR)) }
        for (name, kind) in entries {
            let path = prefix + name
            switch Int(kind) {
            case Int(DT_REG):
                add(path, unreadable: unreadable)
            case Int(DT_DIR):
                try walk(path, unreadable: unreadable)
            case Int(DT_LNK):
                var info = stat()
                if stat(path, &info) != 0 {
                    let error = ElasticFlowError.io(path: path, operation: "follow the symlink", errno: errno)
                    if unreadable == .fail { throw error }
                    skipped.append(SkippedEntry(path: path, reason: error.description))
                } else if info.st_mode & S_IFMT == S_IFREG {
                    add(path, unreadable: unreadable)
                }  // a link to a directory is not descended; to a FIFO or device, left out
            default:
                continue  // FIFOs, sockets, devices
            }
        }
    }

    /// Whether name `a` comes before name `b` byte-wise, each read with a `/` after it when it
    /// names a folder (`memcmp` on the UTF-8 bytes).
    private static func precedes(_ a: String, _ aIsFolder: Bool, _ b: String, _ bIsFolder: Bool) -> Bool {
        var a = a
        var b = b
        return a.withUTF8 { x in
            b.withUTF8 { y in
                let common = min(x.count, y.count)
                if common > 0 {
                    let order = memcmp(x.baseAddress!, y.baseAddress!, common)
                    if order != 0 { return order < 0 }
                }
                // One is a prefix of the other: what follows it is the folder's "/", or nothing.
                let nextA: Int = x.count > common ? Int(x[common]) : aIsFolder ? 0x2F : -1
                let nextB: Int = y.count > common ? Int(y[common]) : bIsFolder ? 0x2F : -1
                return nextA < nextB
            }
        }
    }

    /// A regular file found in a directory. Under `.skip` it is opened now, so an unreadable one
    /// is left out; under `.fail` the job's own check of every source (one `open` each, before
    /// any work) reports it with the same message, and a second open here would only cost time
    /// (two system calls a file: about 10 % of counting 5,000 small files).
    private mutating func add(_ path: String, unreadable: UnreadableEntries) {
        if unreadable == .skip, let error = Self.unreadable(path) {
            skipped.append(SkippedEntry(path: path, reason: error.description))
        } else {
            sources.append(.file(path))
        }
    }

    /// Why `path` cannot be opened for reading, or nil when it can.
    private static func unreadable(_ path: String) -> ElasticFlowError? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)  // O_NONBLOCK: a FIFO must not hang here
        if fd < 0 { return .io(path: path, operation: "open", errno: errno) }
        close(fd)
        return nil
    }

    private static func kind(_ mode: mode_t) -> UInt8 {
        switch mode & S_IFMT {
        case S_IFREG: return UInt8(DT_REG)
        case S_IFDIR: return UInt8(DT_DIR)
        case S_IFLNK: return UInt8(DT_LNK)
        default: return UInt8(DT_UNKNOWN)
        }
    }

    /// How the names in a list are separated.
    public enum NameSeparator: String, Sendable {
        /// NUL when the list holds a NUL byte (`find -print0`), else newline.
        case automatic
        /// Each name ends at a newline (`\n`).
        case newline
        /// Each name ends at a NUL byte (`find -print0`, `xargs -0`).
        case nul
    }

    /// The names in a list (`--files-from`): one per line, or NUL-terminated (names with spaces
    /// and newlines then work). Empty names are ignored; nothing else is changed (no trimming).
    /// - Parameters:
    ///   - path: the list's path, or `-` for standard input.
    ///   - separator: how names end: newline, NUL, or `automatic` (NUL when the list holds one).
    /// - Throws: `ElasticFlowError.io` when it cannot be read.
    public static func names(inListAt path: String, separator: NameSeparator = .automatic) throws(ElasticFlowError)
        -> [String]
    {
        let fd = path == "-" ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .io(path: path, operation: "open the file list", errno: errno) }
        defer { if fd != STDIN_FILENO { close(fd) } }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                let error = errno
                if error == EISDIR { throw .isDirectory(path: path) }
                throw .io(path: path, operation: "read the file list", errno: error)
            }
            bytes.append(contentsOf: chunk[..<n])
        }
        return names(in: bytes, separator: separator)
    }

    /// The names in the bytes of a list (see `names(inListAt:separator:)`).
    public static func names(in bytes: [UInt8], separator: NameSeparator = .automatic) -> [String] {
        let nul = separator == .nul || (separator == .automatic && bytes.contains(0))
        return bytes.split(separator: nul ? 0 : UInt8(ascii: "\n"), omittingEmptySubsequences: true)
            .map { String(decoding: $0, as: UTF8.self) }
    }
}

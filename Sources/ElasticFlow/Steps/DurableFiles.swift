#if canImport(Glibc)
    import Glibc
#endif

/// The few file operations the step journal needs, on descriptors (`openat`, `write`, `fsync`, `renameat`),
/// each failure an `ElasticFlowError.io` naming the path.
///
/// Durability rule: a file that replaces another is written to `NAME.tmp`, fsynced, renamed over `NAME`, and
/// the directory is fsynced, so after a crash `NAME` is either the old file or the new one, never a mix.
enum DurableFiles {
    /// `directory/name`, without doubling a trailing slash.
    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// Opens a directory for `*at` calls, `fsync` and `flock`.
    /// - Returns: the descriptor, or nil when the directory does not exist.
    static func openDirectory(_ path: String) throws(ElasticFlowError) -> Int32? {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw .io(path: path, operation: "open directory", errno: errno)
        }
        return fd
    }

    /// Creates a directory and any missing parents (`mkdir -p`), making each new entry durable.
    static func makeDirectories(_ path: String) throws(ElasticFlowError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw .io(path: path, operation: "create directory", errno: ENOTDIR)
            }
            return
        }
        guard errno == ENOENT else { throw .io(path: path, operation: "create directory", errno: errno) }
        let parent = parentDirectory(of: path)
        if parent != path { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw .io(path: path, operation: "create directory", errno: errno)
        }
        if let parentFD = try openDirectory(parent) {
            defer { close(parentFD) }
            try sync(parentFD, path: parent)
        }
    }

    static func parentDirectory(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        if slash == trimmed.startIndex { return "/" }
        return String(trimmed[..<slash])
    }

    /// `fsync`, retried on EINTR.
    static func sync(_ fd: Int32, path: String) throws(ElasticFlowError) {
        while fsync(fd) != 0 {
            if errno != EINTR { throw .io(path: path, operation: "sync", errno: errno) }
        }
    }

    /// Writes every byte (short writes and EINTR are retried).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(ElasticFlowError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "write", errno: errno)
            }
            offset += written
        }
    }

    /// Reads a whole file.
    /// - Parameters:
    ///   - name: relative to `directoryFD`, or a path with `AT_FDCWD`.
    ///   - path: the file's full path, for errors.
    /// - Returns: the bytes, or nil when the file does not exist.
    static func read(_ name: String, in directoryFD: Int32, path: String) throws(ElasticFlowError) -> [UInt8]? {
        let fd = openat(directoryFD, name, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw .io(path: path, operation: "open", errno: errno)
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var info = stat()
        if fstat(fd, &info) == 0 && info.st_size > 0 { bytes.reserveCapacity(Int(info.st_size)) }
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read", errno: errno)
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
        }
    }

    /// Replaces `name` in the directory with `bytes` atomically and durably (see the type's rule).
    static func writeAtomically(
        _ bytes: [UInt8], name: String, in directoryFD: Int32, directory: String
    ) throws(ElasticFlowError) {
        let temporary = name + ".tmp"
        let temporaryPath = join(directory, temporary)
        let fd = openat(directoryFD, temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw .io(path: temporaryPath, operation: "create", errno: errno) }
        do throws(ElasticFlowError) {
            try writeAll(fd, bytes, path: temporaryPath)
            try sync(fd, path: temporaryPath)
        } catch {
            close(fd)
            unlinkat(directoryFD, temporary, 0)
            throw error
        }
        if close(fd) != 0 {
            let error = errno
            unlinkat(directoryFD, temporary, 0)
            throw .io(path: temporaryPath, operation: "close", errno: error)
        }
        if renameat(directoryFD, temporary, directoryFD, name) != 0 {
            let error = errno
            unlinkat(directoryFD, temporary, 0)
            throw .io(path: join(directory, name), operation: "replace", errno: error)
        }
        try sync(directoryFD, path: directory)
    }

    /// Removes a directory holding only files (a step directory whose creation was interrupted).
    static func removeFlatDirectory(_ path: String) throws(ElasticFlowError) {
        guard let directory = opendir(path) else {
            if errno == ENOENT { return }
            throw .io(path: path, operation: "open directory", errno: errno)
        }
        defer { closedir(directory) }
        for name in try entries(of: directory, path: path) {
            if unlink(join(path, name)) != 0 && errno != ENOENT {
                throw .io(path: join(path, name), operation: "remove", errno: errno)
            }
        }
        if rmdir(path) != 0 && errno != ENOENT { throw .io(path: path, operation: "remove", errno: errno) }
    }

    /// The names in a directory, without `.` and `..`.
    /// - Returns: nil when the directory does not exist.
    static func names(in path: String) throws(ElasticFlowError) -> [String]? {
        guard let directory = opendir(path) else {
            if errno == ENOENT { return nil }
            throw .io(path: path, operation: "open directory", errno: errno)
        }
        defer { closedir(directory) }
        return try entries(of: directory, path: path)
    }

    private static func entries(of directory: OpaquePointer, path: String) throws(ElasticFlowError) -> [String] {
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(directory) else {
                if errno != 0 { throw .io(path: path, operation: "read directory", errno: errno) }
                return names
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
    }
}

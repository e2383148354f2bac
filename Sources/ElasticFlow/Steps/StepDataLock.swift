import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The exclusive hold of one master on a step-data directory: an `flock` on `<directory>/master.lock`
/// for as long as any holder in this process lives. A second master process on the same directory
/// is refused at once, naming the directory and the holder's pid (written into the file), instead of
/// racing it for step numbers and temporary directories. The kernel drops the lock when the process
/// dies, however it dies (kill -9 included), so it is never left stale; the pid in the file is then
/// only a leftover, and the next master overwrites it.
///
/// In one process, holders of the same directory share the one descriptor (an `flock` belongs to an
/// open file description, so a second `open` would conflict with the first): `StepQueue`, `resume`
/// and a journaled `count` may each take it, nested.
public final class StepDataLock: Sendable {
    /// The directory held.
    public let directory: String
    private let key: FileKey

    /// The lock file's name inside the step-data directory (never a step directory's name).
    public static let fileName = "master.lock"

    private struct FileKey: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    /// Open lock files of this process with their holder counts (guarded by the mutex; the file is
    /// closed, and the lock dropped, when the count reaches 0).
    private static let held = Mutex<[FileKey: (fd: Int32, holders: Int)]>([:])

    /// Takes the directory (creating it when missing).
    /// - Throws: `ElasticFlowError.journal` when another process holds it, `.io` when the directory
    ///   or its lock file cannot be created.
    public init(directory: String) throws(ElasticFlowError) {
        guard !directory.isEmpty else { throw .invalidArgument("the step-data directory is an empty path") }
        try DurableFiles.makeDirectories(directory)
        let path = DurableFiles.join(directory, Self.fileName)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: path, operation: "open lock file", errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = errno
            close(fd)
            throw .io(path: path, operation: "stat", errno: error)
        }
        let key = FileKey(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        self.directory = directory
        self.key = key
        // Under the registry's mutex: another thread of this process taking the same directory
        // meanwhile must find it registered, not conflict with our own flock. (A non-blocking
        // flock and an 8-byte write: nothing here waits.)
        let refused = try Self.held.withLock { (held) throws(ElasticFlowError) -> Bool in
            if let entry = held[key] {
                close(fd)  // this process holds it already
                held[key] = (entry.fd, entry.holders + 1)
                return false
            }
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                if errno == EINTR { continue }
                if errno == EWOULDBLOCK { return true }
                let error = errno
                close(fd)
                throw .io(path: path, operation: "lock", errno: error)
            }
            let line = Array("\(getpid())\n".utf8)
            // Best effort: the pid only makes the refusal clearer, the lock is the flock. Written
            // over the old one, then cut to length, so a reader never sees an empty file.
            if line.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, 0) }) == line.count {
                _ = ftruncate(fd, off_t(line.count))
            }
            held[key] = (fd, 1)
            return false
        }
        if refused {
            let holder = Self.holderPID(fd)
            close(fd)
            throw .journal(
                "the step-data directory '\(directory)' is in use by another master"
                    + (holder.map { " (pid \($0))" } ?? "") + ": wait for it to finish, or give another --step-data")
        }
    }

    deinit {
        let key = self.key
        Self.held.withLock { held in
            guard let entry = held[key] else { return }
            if entry.holders > 1 {
                held[key] = (entry.fd, entry.holders - 1)
            } else {
                close(entry.fd)  // drops the flock
                held[key] = nil
            }
        }
    }

    /// The holder's pid, as it wrote it: a holder that has just taken the lock may not have
    /// written it yet (the file then holds nothing, or a former holder's pid, no longer alive), so
    /// this looks again for up to 0.2 s. nil when no live pid appears.
    private static func holderPID(_ fd: Int32) -> Int32? {
        for _ in 0..<20 {
            if let pid = recordedPID(fd), pid != getpid(), kill(pid, 0) == 0 || errno == EPERM { return pid }
            usleep(10_000)
        }
        return nil
    }

    /// The pid in the lock file's first line, if any.
    private static func recordedPID(_ fd: Int32) -> Int32? {
        var bytes = [UInt8](repeating: 0, count: 16)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        let firstLine = bytes[..<n].prefix { $0 != 0x0A }
        return Int32(String(decoding: firstLine, as: UTF8.self).trimmingWhitespace())
    }
}

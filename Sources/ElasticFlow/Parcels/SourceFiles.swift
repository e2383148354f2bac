import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A step's source files, each opened once on first use and shared by every thread (reads are
/// positional: `pread`, `sendfile` with an offset), closed when the step lets go of it.
final class SourceFiles: Sendable {
    let paths: [String]
    private let descriptors: Mutex<[Int32]>

    init(paths: [String]) {
        self.paths = paths
        descriptors = Mutex(Array(repeating: -1, count: paths.count))
    }

    deinit {
        descriptors.withLock { for fd in $0 where fd >= 0 { close(fd) } }
    }

    /// The descriptor of source `index`, opened on first use.
    /// - Throws: `ElasticFlowError.io` or `.isDirectory` when it cannot be opened,
    ///   `.invalidArgument` for an index out of range.
    func descriptor(_ index: Int) throws(ElasticFlowError) -> Int32 {
        guard index >= 0 && index < paths.count else {
            throw .invalidArgument("source \(index): the step has \(paths.count) source(s)")
        }
        if let fd = descriptors.withLock({ $0[index] >= 0 ? $0[index] : nil }) { return fd }
        let fd = try DataSource.file(paths[index]).open()  // outside the lock: opening may block
        return descriptors.withLock { open in
            if open[index] >= 0 {
                close(fd)  // another thread opened it meanwhile
            } else {
                open[index] = fd
            }
            return open[index]
        }
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// A job's sources after the one check of them that comes before any work: every file opened
/// (a missing or unreadable one, or a directory, fails here with the message opening it gives),
/// one `fstat` saying whether it is a regular file and its size, and — when asked, for the
/// seekable zstd split under decompression `auto` — one `pread` of a regular file's first bytes
/// saying its format. The descriptors stay open for the read that follows, so a file is opened once in all:
/// a small file used to be opened three times (the check, the seekable sniff, the cutter), a
/// third of the 13 µs each of 5,000 small files cost (docs/benchmarks.md, "Many small files").
///
/// A FIFO, a character device or a socket is always kept open (a second open would lose what was
/// written between the two, and its writer might get SIGPIPE). Regular files are kept open up to
/// `descriptorBudget` of them; those past it are closed after the check and opened again when
/// read, so 100,000 files never hold 100,000 descriptors. Standard input and custom sources are
/// not opened here. Not thread-safe: one owner at a time (the check, the seekable split, then
/// the cutter), and what is still open when it goes is closed.
final class CheckedSources {
    /// What the check found about one source.
    struct Entry {
        /// The descriptor kept open for the read, or -1: none (opened when it is read).
        var fd: Int32
        /// Whether the source is a regular file (then `size` and `format` hold).
        var isRegular: Bool
        /// The file's size in bytes at the check.
        var size: UInt64
        /// The format of its first bytes (`InputDecoder.plain` unless sniffed and compressed).
        var format: Int32
    }

    /// The sources, in order.
    let sources: [DataSource]
    private var entries: [Entry]

    /// Regular files one check keeps open at most: a quarter of the soft `RLIMIT_NOFILE` (so two
    /// jobs in one process, sockets and libraries still have room), and never more than 16,384.
    static let descriptorBudget: Int = {
        let soft = sysconf(Int32(_SC_OPEN_MAX))  // the soft RLIMIT_NOFILE; -1 when unlimited
        return soft < 0 ? 16384 : min(soft / 4, 16384)
    }()

    /// Checks every source, in order.
    /// - Parameters:
    ///   - sources: the job's sources.
    ///   - readingFormats: whether a regular file's first bytes are read to tell its format (else
    ///     every format is `InputDecoder.plain`: the reader tells it when it starts the file).
    ///   - minimumSize: only files of at least this size have their format read (the smaller
    ///     ones' reader tells it).
    ///   - budget: regular files kept open at most (the rest are opened again when read).
    /// - Throws: `ElasticFlowError.io` for the first source that is missing or unreadable,
    ///   `.isDirectory` for a directory; nothing is left open then.
    init(
        _ sources: [DataSource], readingFormats: Bool, minimumSize: UInt64 = 0,
        budget: Int = CheckedSources.descriptorBudget
    )
        throws(ElasticFlowError)
    {
        var entries: [Entry] = []
        entries.reserveCapacity(sources.count)
        var kept = 0
        for source in sources {
            guard case .file = source else {  // standard input: opened by the reader; custom: no descriptor
                entries.append(Entry(fd: -1, isRegular: false, size: 0, format: InputDecoder.plain))
                continue
            }
            let fd: Int32
            var info = stat()
            do {
                fd = try source.open(status: &info)
            } catch {
                for entry in entries where entry.fd > STDIN_FILENO { close(entry.fd) }
                throw error
            }
            guard info.st_mode & S_IFMT == S_IFREG else {
                entries.append(Entry(fd: fd, isRegular: false, size: 0, format: InputDecoder.plain))
                continue
            }
            let size = UInt64(info.st_size)
            let format =
                readingFormats && size >= minimumSize ? SourceReader.format(ofOpenFile: fd) : InputDecoder.plain
            if kept < budget {
                kept += 1
                entries.append(Entry(fd: fd, isRegular: true, size: size, format: format))
            } else {
                close(fd)
                entries.append(Entry(fd: -1, isRegular: true, size: size, format: format))
            }
        }
        self.sources = sources
        self.entries = entries
    }

    private init(sources: [DataSource], entries: [Entry]) {
        self.sources = sources
        self.entries = entries
    }

    deinit { for entry in entries where entry.fd > STDIN_FILENO { close(entry.fd) } }

    /// How many sources there are.
    var count: Int { sources.count }

    /// What the check found about source `index`.
    func entry(_ index: Int) -> Entry { entries[index] }

    /// Hands over the descriptor kept for source `index` (the caller closes it), or nil when none
    /// is kept: then the caller opens the source itself.
    func takeDescriptor(_ index: Int) -> Int32? {
        let fd = entries[index].fd
        guard fd >= 0 else { return nil }
        entries[index].fd = -1
        return fd
    }

    /// The sources at `indices`, in that order, with their descriptors (moved out of this one).
    func subset(_ indices: [Int]) -> CheckedSources {
        if indices.elementsEqual(0..<count) { return self }
        var picked: [Entry] = []
        picked.reserveCapacity(indices.count)
        for index in indices {
            picked.append(entries[index])
            entries[index].fd = -1
        }
        return CheckedSources(sources: indices.map { sources[$0] }, entries: picked)
    }
}

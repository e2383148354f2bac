internal import CElasticFlow
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The bytes a node actually processed for one split, as reported with its result: where they
/// start, how many, how many lines, their CRC32C, and the file's size as that node saw it. The
/// master keeps it with the receipt, so a retry or a duplicate that read other bytes is caught.
public struct ProcessedRange: Hashable, Sendable {
    /// The first byte processed: the first line that starts in the split.
    public var start: UInt64
    /// Bytes processed, through the end of the last line that starts in the split.
    public var length: UInt64
    /// Lines processed.
    public var lines: UInt64
    /// The CRC32C of the bytes processed.
    public var checksum: UInt32
    /// The file's size as the node saw it.
    public var fileSize: UInt64

    /// A range of the given fields, as documented on each.
    public init(start: UInt64, length: UInt64, lines: UInt64, checksum: UInt32, fileSize: UInt64) {
        self.start = start
        self.length = length
        self.lines = lines
        self.checksum = checksum
        self.fileSize = fileSize
    }
}

/// Reads the records a split owns, the rule of Hadoop's `LineRecordReader`: a split
/// `[offset, offset + length)` owns every line that *starts* in it. So unless it starts at 0 it
/// skips the partial line it begins in (the previous split finishes it), and it reads past its end
/// to finish its last line. Whatever the cuts, the owned ranges of consecutive splits tile the file
/// exactly, lines are never split, and a word (which never spans a newline) is counted once: the
/// result is the single-node result, byte for byte. A split that lies inside one long line owns
/// nothing; the split where that line starts reads all of it.
///
/// A source the master split by its seek table (zstd's seekable format) is read as a run of whole
/// frames instead (`SeekableReader`, the same ownership of lines in the decompressed text, moved
/// one byte on), and what was processed is measured in that text.
///
/// Files are opened once per reader and read with `pread` into the caller's recycled buffer (no
/// freshly zeroed pages per parcel). Thread-safe: descriptors are shared, reads are positional.
final class SplitReader: Sendable {
    let files: SourceFiles
    var paths: [String] { files.paths }
    /// The sources split by frames.
    let seekable: Set<Int>
    /// Their seek tables, read on first use (guarded; a leaf lock, no I/O under it).
    private let tables = Mutex<[Int: SeekTable]>([:])
    /// Idle frame readers: one per thread at a time, kept for the next split.
    private let readers = Mutex<[SeekableReader]>([])

    /// Bytes read past a split's end in the first read, to finish its last line without a second
    /// system call in the common case (lines far shorter than this).
    static let lookahead: UInt64 = 64 << 10

    init(paths: [String], seekable: Set<Int> = []) {
        files = SourceFiles(paths: paths)
        self.seekable = seekable
    }

    /// Reads the lines `range` owns into `buffer`.
    /// - Parameter expectedSize: the file's size when the master split it; a different size here
    ///   means the file differs between nodes or changed, and fails the parcel.
    /// - Returns: where the owned bytes lie in `buffer` and what was processed.
    /// - Throws: `ElasticFlowError.io` (open or read failed), `.invalidArgument` (size mismatch).
    func read(_ range: ByteRange, expectedSize: UInt64, into buffer: ParcelBuffer) throws(ElasticFlowError) -> (
        bytes: Range<Int>, processed: ProcessedRange
    ) {
        let fd = try files.descriptor(range.source)
        let path = paths[range.source]
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(path: path, operation: "stat", errno: errno) }
        let size = UInt64(info.st_size)
        guard size == expectedSize else {
            throw .invalidArgument(
                "shared input '\(path)' is \(size) bytes on this node but was \(expectedSize) when the master split it")
        }
        if seekable.contains(range.source) {
            return try readFrames(range, fd: fd, size: size, path: path, into: buffer)
        }
        let end = range.offset + range.length
        guard range.length > 0, end <= size else {
            throw .invalidArgument("split \(range.offset)+\(range.length) lies outside '\(path)' (\(size) bytes)")
        }
        // Read from one byte before the split: that byte tells whether a line starts at `offset`.
        let readStart = range.offset == 0 ? 0 : range.offset - 1
        let first = Int(min(size, end + Self.lookahead) - readStart)
        buffer.count = 0
        if buffer.capacity < first { buffer.grow(to: first) }
        try Self.fill(buffer, upTo: first, fd: fd, fileOffset: readStart, path: path)

        let bytes = buffer.base.assumingMemoryBound(to: UInt8.self)
        // The last byte of the split, as an index into the buffer.
        let lastIndex = Int(end - 1 - readStart)
        var start = 0
        if range.offset > 0 {
            // The first line starting in the split follows the first newline at or after offset-1
            // and before its last byte (a newline there would start a line in the next split).
            guard let newline = memchr(bytes, 0x0A, lastIndex) else {
                let processed = ProcessedRange(start: end, length: 0, lines: 0, checksum: 0, fileSize: size)
                return (0..<0, processed)
            }
            start = UnsafeRawPointer(newline) - UnsafeRawPointer(bytes) + 1
        }
        // The last owned line ends at the first newline at or after the split's last byte.
        var searchFrom = lastIndex
        var stop: Int
        while true {
            let base = buffer.base.assumingMemoryBound(to: UInt8.self)
            if let newline = memchr(base + searchFrom, 0x0A, buffer.count - searchFrom) {
                stop = UnsafeRawPointer(newline) - UnsafeRawPointer(base) + 1
                break
            }
            let readSoFar = readStart + UInt64(buffer.count)
            if readSoFar == size {
                stop = buffer.count
                break
            }
            // A line longer than the look-ahead: read on (doubling), the slow path.
            searchFrom = buffer.count
            let more = Int(min(size - readSoFar, UInt64(max(buffer.count, 1 << 16))))
            if buffer.capacity < buffer.count + more { buffer.grow(to: max(buffer.capacity * 2, buffer.count + more)) }
            try Self.fill(buffer, upTo: buffer.count + more, fd: fd, fileOffset: readStart, path: path)
        }
        let owned = UnsafeRawBufferPointer(start: buffer.base + start, count: stop - start)
        // One pass for both (ef_crc32c_lines), since the bytes are read once here.
        let (checksum, lines) = crc32cAndLines(owned)
        let processed = ProcessedRange(
            start: readStart + UInt64(start), length: UInt64(owned.count), lines: lines, checksum: checksum,
            fileSize: size)
        return (start..<stop, processed)
    }

    /// A seekable source's split: the lines its run of frames owns, in the text's offsets.
    private func readFrames(_ range: ByteRange, fd: Int32, size: UInt64, path: String, into buffer: ParcelBuffer)
        throws(ElasticFlowError) -> (bytes: Range<Int>, processed: ProcessedRange)
    {
        let table: SeekTable
        if let known = tables.withLock({ $0[range.source] }) {
            table = known
        } else {
            guard let loaded = try SeekTable.load(fd: fd, size: size, name: path) else {
                throw .invalidArgument("shared input '\(path)' is not in zstd's seekable format on this node")
            }
            tables.withLock { $0[range.source] = loaded }
            table = loaded
        }
        guard let run = table.run(compressedOffset: range.offset, length: range.length) else {
            throw .invalidArgument(
                "split \(range.offset)+\(range.length) is not a run of whole frames of the seekable '\(path)'")
        }
        let idle = readers.withLock { $0.popLast() }
        let reader: SeekableReader
        if let idle { reader = idle } else { reader = try SeekableReader() }
        defer { readers.withLock { $0.append(reader) } }
        let (owned, start) = try reader.read(
            run, of: table, fd: fd, name: path, boundary: .lines, lookPastCap: Limits.maxPayload.upperBound,
            into: buffer)
        let (checksum, lines) = crc32cAndLines(UnsafeRawBufferPointer(rebasing: buffer.bytes[owned]))
        return (
            owned,
            ProcessedRange(start: start, length: UInt64(owned.count), lines: lines, checksum: checksum, fileSize: size)
        )
    }

    /// `pread` until the buffer holds `limit` bytes (from `fileOffset` at index 0); also
    /// `SeekableReader`'s read of compressed frames.
    /// - Parameter shared: the file is a shared input (named so in the error when it ends early).
    static func fill(
        _ buffer: ParcelBuffer, upTo limit: Int, fd: Int32, fileOffset: UInt64, path: String, shared: Bool = true
    ) throws(ElasticFlowError) {
        while buffer.count < limit {
            let n = pread(fd, buffer.base + buffer.count, limit - buffer.count, off_t(fileOffset) + off_t(buffer.count))
            if n > 0 {
                buffer.count += n
            } else if n == 0 {
                throw .invalidArgument(
                    "\(shared ? "shared input " : "")'\(path)' ended early: it changed while being read")
            } else if errno != EINTR {
                throw .io(path: path, operation: "read", errno: errno)
            }
        }
    }
}

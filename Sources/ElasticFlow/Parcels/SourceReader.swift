#if canImport(Glibc)
    import Glibc
#endif

/// Reads one source after another, as text: the bytes as they are, or — when decompression is
/// `auto` and the first bytes name gzip, zstd, lz4 or bzip2 — the text they decompress to. The
/// caller asks for at most what its parcel has room for, so a decompression bomb is cut into
/// parcels like any long file and never held whole.
///
/// One 256 KiB block serves three purposes: the first bytes (to recognise the format), the
/// compressed input, and plain reads smaller than 64 KiB (one `read(2)` per block, not per small
/// parcel). Larger plain reads go straight to the caller's buffer. Not thread-safe.
final class SourceReader {
    private let decompression: Decompression
    private let block = ParcelBuffer(capacity: 256 << 10)
    private var start = 0  // next unread byte of `block`
    private var decoder: InputDecoder?
    private var fd: Int32 = -1
    /// A custom source's pass (then `fd` is -1), and the part of its last chunk not yet read.
    private var chunks: (any ChunkReader)?
    private var chunk: [UInt8] = []
    private var chunkStart = 0
    private var chunksEnded = false
    private var name = ""
    private var atEnd = false
    /// The current source's format (`InputDecoder.plain` when read as it is).
    private(set) var format = InputDecoder.plain

    init(decompression: Decompression) { self.decompression = decompression }

    /// Starts reading `fd` (the caller keeps ownership), named `name` in errors: reads its first
    /// bytes to recognise the format.
    func begin(_ fd: Int32, name: String) throws(ElasticFlowError) {
        self.fd = fd
        chunks = nil
        try begin(name: name)
    }

    /// Starts reading a custom source's chunks, named `name` in errors.
    func begin(chunks: any ChunkReader, name: String) throws(ElasticFlowError) {
        fd = -1
        self.chunks = chunks
        chunk = []
        chunkStart = 0
        chunksEnded = false
        try begin(name: name)
    }

    /// Ends a custom source's pass (its reader is let go: an async source's task stops).
    func end() {
        chunks = nil
        chunk = []
    }

    private func begin(name: String) throws(ElasticFlowError) {
        self.name = name
        block.count = 0
        start = 0
        atEnd = false
        format = InputDecoder.plain
        guard decompression == .auto else { return }
        var detected: Int32?
        repeat {  // a pipe may deliver the first bytes a few at a time
            try refill(keeping: true)
            detected = InputDecoder.format(of: block.bytes, atEnd: atEnd)
        } while detected == nil
        format = detected ?? InputDecoder.plain
        if format != InputDecoder.plain {
            if decoder == nil { decoder = try InputDecoder() }
            try decoder!.reset(format)
        }
    }

    /// Up to `count` bytes of text into `destination`; 0 at the end of the source.
    /// - Throws: `.io` for a read error; `.invalidArgument` naming the file and the compressed byte
    ///   offset for corrupt or truncated compressed data.
    func read(into destination: UnsafeMutableRawPointer, count: Int) throws(ElasticFlowError) -> Int {
        guard count > 0 else { return 0 }
        if format != InputDecoder.plain { return try decode(into: destination, count: count) }
        if start == block.count {
            if count >= 64 << 10 { return try readRetrying(destination, count) }
            try refill(keeping: false)
        }
        let n = min(count, block.count - start)
        destination.copyMemory(from: block.base + start, byteCount: n)
        start += n
        return n
    }

    /// Passes over the next `count` bytes of a plain file source without reading them: what the
    /// block holds is dropped, the rest is sought past (`lseek`). Only for a seekable file read as
    /// it is, `count` bytes short of its end (`ParcelCutter.nextRange`).
    func skip(_ count: Int) throws(ElasticFlowError) {
        precondition(format == InputDecoder.plain && chunks == nil && fd >= 0)
        let fromBlock = min(count, block.count - start)
        start += fromBlock
        guard count > fromBlock else { return }
        if lseek(fd, off_t(count - fromBlock), SEEK_CUR) < 0 {
            throw .io(path: name, operation: "seek", errno: errno)
        }
    }

    private func decode(into destination: UnsafeMutableRawPointer, count: Int) throws(ElasticFlowError) -> Int {
        let decoder = decoder!
        while true {
            if start == block.count && !atEnd { try refill(keeping: false) }
            let pending = UnsafeRawBufferPointer(rebasing: block.bytes[start...])
            let (written, used) = decoder.decode(pending, into: destination, capacity: count)
            start += used
            if written < 0 {
                throw .corruptInput(
                    source: name, format: InputDecoder.name(of: format), offset: decoder.offset,
                    reason: decoder.message)
            }
            if written > 0 { return written }
            if start == block.count && atEnd {
                guard decoder.endedCleanly() else {
                    throw .truncatedInput(source: name, format: InputDecoder.name(of: format), size: decoder.offset)
                }
                return 0
            }
            if used == 0 && start < block.count {  // the library neither took input nor gave output
                throw .corruptInput(
                    source: name, format: InputDecoder.name(of: format), offset: decoder.offset,
                    reason: "the decoder made no progress")
            }
        }
    }

    /// Reads more into the block: after what it holds (`keeping`, while recognising the format) or
    /// in place of it (everything in it was used). Sets `atEnd` at the end of the source.
    private func refill(keeping: Bool) throws(ElasticFlowError) {
        if !keeping {
            block.count = 0
            start = 0
        }
        let n = try readRetrying(block.base + block.count, block.capacity - block.count)
        if n == 0 { atEnd = true }
        block.count += n
    }

    /// One `read(2)`, retried on EINTR (or a copy from a custom source's chunks).
    private func readRetrying(_ destination: UnsafeMutableRawPointer, _ count: Int) throws(ElasticFlowError) -> Int {
        if chunks != nil { return try copyFromChunks(destination, count) }
        while true {
            let n = Glibc.read(fd, destination, count)
            if n >= 0 { return n }
            if errno != EINTR { throw .io(path: name, operation: "read", errno: errno) }
        }
    }

    /// Up to `count` bytes of the custom source's chunks; 0 at its end.
    private func copyFromChunks(_ destination: UnsafeMutableRawPointer, _ count: Int) throws(ElasticFlowError) -> Int {
        while chunkStart == chunk.count {
            if chunksEnded { return 0 }
            let next: [UInt8]?
            do {
                next = try chunks!.next()
            } catch {
                throw .customSource(name, error)
            }
            guard let next else {
                chunksEnded = true
                return 0
            }
            chunk = next
            chunkStart = 0
        }
        let n = min(count, chunk.count - chunkStart)
        chunk.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress! + chunkStart, byteCount: n) }
        chunkStart += n
        return n
    }

    /// The format of the regular file at `path` from its first bytes (`InputDecoder.plain` when it
    /// is plain, shorter than a magic number, or cannot be read: opening it reports that later).
    /// Anything but a regular file is never opened here: a FIFO opened and closed before the
    /// count's own open would cut its writer off (SIGPIPE) and lose its data.
    static func format(ofFile path: String) -> Int32 {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return InputDecoder.plain }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return InputDecoder.plain }
        defer { close(fd) }
        return format(ofOpenFile: fd)
    }

    /// The format of the regular file open as `fd` from its first bytes (one `pread` at offset 0,
    /// so the file position is left alone): `InputDecoder.plain` when it is plain, shorter than a
    /// magic number, or cannot be read (reading it reports that later).
    static func format(ofOpenFile fd: Int32) -> Int32 {
        withUnsafeTemporaryAllocation(byteCount: InputDecoder.magicSize, alignment: 8) { head in
            let n = pread(fd, head.baseAddress, head.count, 0)
            guard n > 0 else { return InputDecoder.plain }
            return InputDecoder.format(of: UnsafeRawBufferPointer(rebasing: head[..<n]), atEnd: true)
                ?? InputDecoder.plain
        }
    }
}

extension ElasticFlowError {
    /// Compressed input that does not decode: the file, its format, and where the decoder found it.
    static func corruptInput(source: String, format: String, offset: UInt64, reason: String) -> ElasticFlowError {
        .invalidArgument(
            "'\(source)': corrupt \(format) data at or before compressed byte \(offset): \(reason) "
                + "(--decompress none reads the bytes as they are)")
    }

    /// Compressed input that ends inside a member or frame.
    static func truncatedInput(source: String, format: String, size: UInt64) -> ElasticFlowError {
        let unit = format == "gzip" ? "member" : format == "bzip2" ? "stream" : "frame"
        return .invalidArgument(
            "'\(source)': truncated \(format) data: the input ends at compressed byte \(size), inside a \(unit)")
    }
}

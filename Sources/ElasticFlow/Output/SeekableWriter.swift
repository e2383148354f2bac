internal import CElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// Writes a zstd file in the seekable format (`ef_seekable_compress`, `ef_seekable_table_write`,
/// CCore/src/seekable.c): the input's text cut into frames of exactly `frameSize` bytes (the last
/// one shorter), each an independent zstd frame with its content size and checksum, then the seek
/// table with a checksum per frame. Any zstd tool decompresses it (the table is a skippable
/// frame); ElasticFlow splits it by its frames.
public enum SeekableWriter {
    /// The frame sizes `--frame-size` accepts: at least 1 byte (tests cut frames everywhere), at most what a parcel may hold.
    public static let frameSizes = 1...Int(SeekTable.maxFrameSize)
    /// The frame size when none is given: 1 MiB of text per frame.
    public static let defaultFrameSize = 1 << 20

    /// What was written.
    public struct Summary: Hashable, Sendable {
        /// zstd frames written (the seek table has one entry each).
        public var frames: Int
        /// Bytes of text compressed (the input as read, decompressed when it was compressed).
        public var textBytes: UInt64
        /// Bytes written to the output: the frames and the seek table.
        public var compressedBytes: UInt64
    }

    /// Compresses `source` (read as `count` reads it: a compressed input is decompressed first
    /// unless `decompression` is `none`) into the file descriptor `output`, named `outputName` in errors.
    /// - Throws: `ElasticFlowError` for an unreadable or corrupt input, a bad setting, or a write error.
    public static func compress(
        _ source: DataSource, to output: Int32, outputName: String, frameSize: Int = defaultFrameSize,
        level: Int = 3, decompression: Decompression = .auto
    ) throws(ElasticFlowError) -> Summary {
        try Limits.check(bytes: frameSize, in: frameSizes, "--frame-size")
        try Limits.check(level, in: Int(EF_ZSTD_LEVEL_MIN)...Int(EF_ZSTD_LEVEL_MAX), "--level")
        let fd = try source.open()
        defer { if fd > STDIN_FILENO { close(fd) } }
        let reader = SourceReader(decompression: decompression)
        try reader.begin(fd, name: source.description)
        guard let handle = ef_seekable_create() else { throw .core(.outOfMemory, operation: "creating a compressor") }
        defer { ef_seekable_free(handle) }
        let text = ParcelBuffer(capacity: frameSize)
        let frame = ParcelBuffer(capacity: ef_seekable_frame_bound(frameSize))
        var frames: [ef_seek_frame] = []
        var summary = Summary(frames: 0, textBytes: 0, compressedBytes: 0)
        var atEnd = false
        while !atEnd {
            text.count = 0
            while text.count < frameSize {
                let n = try reader.read(into: text.base + text.count, count: frameSize - text.count)
                if n == 0 {
                    atEnd = true
                    break
                }
                text.count += n
            }
            guard text.count > 0 else { break }
            guard frames.count < Int(EF_SEEKABLE_MAX_FRAMES) else {
                throw .invalidArgument(
                    "the input needs more than \(EF_SEEKABLE_MAX_FRAMES) frames: give a larger --frame-size")
            }
            var entry = ef_seek_frame()
            let written = ef_seekable_compress(
                handle, Int32(level), text.base.assumingMemoryBound(to: UInt8.self), text.count,
                frame.base.assumingMemoryBound(to: UInt8.self), frame.capacity, &entry)
            guard written > 0 else {
                throw .core(CoreErrorCode(rawValue: Int32(written)), operation: "compressing a frame")
            }
            try write(output, UnsafeRawBufferPointer(start: frame.base, count: written), name: outputName)
            frames.append(entry)
            summary.frames += 1
            summary.textBytes += UInt64(text.count)
            summary.compressedBytes += UInt64(written)
        }
        let table = ParcelBuffer(capacity: ef_seekable_table_size(frames.count))
        let size = frames.withUnsafeBufferPointer {
            ef_seekable_table_write(
                $0.baseAddress, $0.count, table.base.assumingMemoryBound(to: UInt8.self), table.capacity)
        }
        guard size > 0 else { throw .core(CoreErrorCode(rawValue: Int32(size)), operation: "writing the seek table") }
        try write(output, UnsafeRawBufferPointer(start: table.base, count: size), name: outputName)
        summary.compressedBytes += UInt64(size)
        return summary
    }

    private static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, name: String) throws(ElasticFlowError) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: name, operation: "write to", errno: errno)
            }
            offset += n
        }
    }
}

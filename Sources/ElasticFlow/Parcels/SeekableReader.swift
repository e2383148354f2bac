internal import CElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

extension ElasticFlowError {
    /// A frame of a seekable zstd file that does not decode, or not as its seek table says.
    static func corruptFrame(source: String, index: Int, offset: UInt64, size: UInt32, reason: String)
        -> ElasticFlowError
    {
        .invalidArgument(
            "'\(source)': corrupt seekable zstd frame \(index) at compressed bytes \(offset)..<\(offset + UInt64(size)): "
                + "\(reason) (--decompress none reads the bytes as they are)")
    }
}

/// Where a record ends: what a reader of a run of frames looks for at its two ends.
enum RecordBoundary: Sendable {
    /// Lines (`\n`): what shared-input splits own, so line tasks see whole lines.
    case lines
    /// Any ASCII whitespace: enough for the word count, and a word is at most the word-size cap,
    /// so the look past a run's end is bounded.
    case whitespace

    func isBoundary(_ byte: UInt8) -> Bool {
        switch self {
        case .lines: return byte == 0x0A
        case .whitespace: return byte == 0x20 || (byte >= 0x09 && byte <= 0x0D)
        }
    }
}

/// Reads the records a run of whole frames of a seekable zstd file owns, decompressing only
/// those frames (and the start of the next one).
///
/// Frames are cut anywhere, mid-word or mid-line. The rule that makes any cut give the plain
/// file's records, whole and once: a run covering text `[d0, d1)` owns the records that start
/// just after a boundary byte at `d0...d1-1` (and, for the first run, the one at 0). So it skips
/// up to its first boundary byte, and reads on past `d1` into the next frame until a boundary
/// byte at `d1` or after: the next run starts just after that same byte, so consecutive runs tile
/// the text exactly. It is `SplitReader`'s rule (Hadoop's `LineRecordReader`) moved one byte on,
/// so a run never needs the byte before it — the last byte of a frame it does not decompress.
///
/// One per thread: it owns the C handle (reused zstd contexts), the compressed bytes' buffer and
/// the streaming decoder for the look past the end. Not thread-safe: `@unchecked Sendable` only so
/// that a pool (`SplitReader`'s, under its lock) can hand it from one thread to the next.
final class SeekableReader: @unchecked Sendable {
    private let handle: OpaquePointer
    private let compressed = ParcelBuffer(capacity: 1 << 20)
    private var decoder: InputDecoder?

    init() throws(ElasticFlowError) {
        guard let handle = ef_seekable_create() else { throw .core(.outOfMemory, operation: "creating a reader") }
        self.handle = handle
    }

    deinit { ef_seekable_free(handle) }

    /// Decompresses frames `run` of `table` (file `fd`, named `name` in errors) into `buffer`, and
    /// as much of the next frames as it takes to find the run's end.
    /// - Parameter lookPastCap: the most bytes read past the run's end (a record longer than this
    ///   fails: a word over the cap, or a line over the limit).
    /// - Returns: where the owned bytes lie in `buffer`, and the text offset of the first of them.
    /// - Throws: `.invalidArgument` naming the file and compressed offset for a corrupt frame or
    ///   one that disagrees with the table, or a record longer than `lookPastCap`; `.io`.
    func read(
        _ run: Range<Int>, of table: SeekTable, fd: Int32, name: String, boundary: RecordBoundary,
        lookPastCap: Int, into buffer: ParcelBuffer
    ) throws(ElasticFlowError) -> (owned: Range<Int>, start: UInt64) {
        let text = table.decompressedRange(run)
        let (offset, length) = table.compressedRange(run)
        let size = Int(text.upperBound - text.lowerBound)
        compressed.count = 0
        if compressed.capacity < Int(length) { compressed.grow(to: Int(length)) }
        try SplitReader.fill(compressed, upTo: Int(length), fd: fd, fileOffset: offset, path: name, shared: false)
        buffer.count = 0
        if buffer.capacity < size + 4096 { buffer.grow(to: size + 4096) }
        let written = table.frames[run].withUnsafeBufferPointer { frames in
            ef_seekable_decompress(
                handle, frames.baseAddress, frames.count, table.checksums ? 1 : 0,
                compressed.base.assumingMemoryBound(to: UInt8.self), Int(length),
                buffer.base.assumingMemoryBound(to: UInt8.self), buffer.capacity)
        }
        guard written == size else {
            guard written == Int(EF_ECORRUPT) else {
                throw .core(CoreErrorCode(rawValue: Int32(written)), operation: "decompressing '\(name)'")
            }
            let at = ef_seekable_offset(handle)
            let index = run.first { table.frames[$0].compressed_offset == at } ?? run.lowerBound
            throw .corruptFrame(
                source: name, index: index, offset: at, size: table.frames[index].compressed_size,
                reason: String(cString: ef_seekable_message(handle)))
        }
        buffer.count = size
        // The end: the first boundary byte at d1 or after (the text's end for the last run).
        var end = buffer.count
        if run.upperBound < table.frames.count {
            end = try lookPast(
                run.upperBound, of: table, fd: fd, name: name, boundary: boundary, cap: lookPastCap, into: buffer)
        }
        var start = 0
        if text.lowerBound > 0 {
            let bytes = buffer.base.assumingMemoryBound(to: UInt8.self)
            start = end
            for index in 0..<end where boundary.isBoundary(bytes[index]) {
                start = index + 1
                break
            }
        }
        return (start..<end, text.lowerBound + UInt64(start))
    }

    /// Decodes the frames from `frame` on, appending to `buffer`, until a boundary byte: returns
    /// the index just past it (or the buffer's end when the text ends first).
    private func lookPast(
        _ frame: Int, of table: SeekTable, fd: Int32, name: String, boundary: RecordBoundary, cap: Int,
        into buffer: ParcelBuffer
    ) throws(ElasticFlowError) -> Int {
        if decoder == nil { decoder = try InputDecoder() }
        let decoder = decoder!
        try decoder.reset(InputDecoder.zstd)
        let runEnd = buffer.count
        var fileOffset = table.frames[frame].compressed_offset
        let chunk = 64 << 10
        compressed.count = 0
        var used = 0
        while true {
            if used == compressed.count {
                // Only the frames' bytes, never the table: the text ends where they do.
                let left = table.tableOffset - fileOffset
                if left == 0 { return buffer.count }
                compressed.count = 0
                used = 0
                try SplitReader.fill(
                    compressed, upTo: Int(min(UInt64(chunk), left)), fd: fd, fileOffset: fileOffset, path: name,
                    shared: false)
                fileOffset += UInt64(compressed.count)
            }
            if buffer.capacity < buffer.count + 4096 { buffer.grow(to: buffer.capacity * 2) }
            let input = UnsafeRawBufferPointer(rebasing: compressed.bytes[used...])
            let (written, consumed) = decoder.decode(input, into: buffer.base + buffer.count, capacity: 4096)
            used += consumed
            if written < 0 {
                throw .corruptInput(
                    source: name, format: "seekable zstd",
                    offset: table.frames[frame].compressed_offset + decoder.offset, reason: decoder.message)
            }
            let bytes = buffer.base.assumingMemoryBound(to: UInt8.self)
            for index in buffer.count..<(buffer.count + written) where boundary.isBoundary(bytes[index]) {
                buffer.count = index + 1
                return index + 1
            }
            buffer.count += written
            if buffer.count - runEnd > cap {
                let at = table.frames[frame].decompressed_offset
                if boundary == .whitespace { throw .wordTooLong(source: name, offset: at, cap: cap) }
                throw .invalidArgument(
                    "'\(name)': a line at text byte \(at) runs past the limit of \(ByteSize.describe(cap))")
            }
            if written == 0 && consumed == 0 && used < compressed.count {
                throw .corruptInput(
                    source: name, format: "seekable zstd",
                    offset: table.frames[frame].compressed_offset + decoder.offset,
                    reason: "the decoder made no progress")
            }
        }
    }
}

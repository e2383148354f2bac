internal import CElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// The seek table of a zstd file in the seekable format (`ef_seekable_footer`, `ef_seekable_parse`,
/// CCore/src/seekable.c): its frames, where each lies in the file and in the text, checked as
/// hostile input (the frames tile the file exactly up to the table). A file without the seekable
/// footer is no error: `load` returns nil and the file is read as a plain zstd stream.
struct SeekTable: Sendable {
    /// The frames in file order; offsets are cumulative.
    let frames: [ef_seek_frame]
    /// Whether the table has a checksum per frame (checked when each frame is decompressed).
    let checksums: Bool
    /// The file's size when the table was read.
    let fileSize: UInt64
    /// Where the table's skippable frame starts: the frames' bytes end there.
    let tableOffset: UInt64

    /// The largest frame a parcel takes: the largest parcel (`Limits.parcelSize`). A frame the
    /// table declares larger is refused before anything is allocated for it.
    static let maxFrameSize = UInt64(Limits.parcelSize.upperBound)

    /// The text's size: the sum of the frames' decompressed sizes.
    var decompressedSize: UInt64 {
        frames.last.map { $0.decompressed_offset + UInt64($0.decompressed_size) } ?? 0
    }

    /// The text a seekable zstd file holds (its table's decompressed size), or nil when the file
    /// cannot be read, is not seekable or its table is damaged (the count reports that itself).
    static func textSize(ofFile path: String) -> UInt64? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, let table = try? load(fd: fd, size: UInt64(info.st_size), name: path) else {
            return nil
        }
        return table.decompressedSize
    }

    /// Reads the seek table of the regular file open as `fd` (of `size` bytes), named `name` in errors.
    /// - Returns: nil when the file does not end with the seekable footer (its magic number).
    /// - Throws: `.invalidArgument` naming the file and the table's offset when the footer or the
    ///   table is malformed or lies, or a frame is larger than `maxFrameSize`; `.io` for a read error.
    static func load(fd: Int32, size: UInt64, name: String) throws(ElasticFlowError) -> SeekTable? {
        let footerSize = Int(EF_SEEKABLE_FOOTER_SIZE)
        guard size >= UInt64(footerSize) else { return nil }
        var footer = [UInt8](repeating: 0, count: footerSize)
        try readFully(fd, into: &footer, at: size - UInt64(footerSize), name: name)
        var count: UInt32 = 0
        var checksums: Int32 = 0
        let tableSize = footer.withUnsafeBufferPointer {
            ef_seekable_footer($0.baseAddress, $0.count, size, &count, &checksums)
        }
        if tableSize == Int64(EF_EBADMAGIC) { return nil }
        guard tableSize > 0 else {
            throw corrupt(name, at: size - UInt64(footerSize), "the seek table's footer is malformed", tableSize)
        }
        let tableOffset = size - UInt64(tableSize)
        var table = [UInt8](repeating: 0, count: Int(tableSize))
        try readFully(fd, into: &table, at: tableOffset, name: name)
        var frames = [ef_seek_frame](repeating: ef_seek_frame(), count: Int(count))
        let parsed = table.withUnsafeBufferPointer { bytes in
            frames.withUnsafeMutableBufferPointer { out in
                ef_seekable_parse(bytes.baseAddress, bytes.count, size, out.baseAddress, out.count)
            }
        }
        guard parsed == Int(count) else {
            throw corrupt(name, at: tableOffset, "the seek table does not describe the file's frames", Int64(parsed))
        }
        for (index, frame) in frames.enumerated() where UInt64(frame.decompressed_size) > maxFrameSize {
            throw .invalidArgument(
                "'\(name)': seekable zstd frame \(index) (compressed byte \(frame.compressed_offset)) expands to "
                    + "\(frame.decompressed_size) bytes, past the limit of \(ByteSize.describe(Int(maxFrameSize))) "
                    + "per parcel")
        }
        return SeekTable(frames: frames, checksums: checksums != 0, fileSize: size, tableOffset: tableOffset)
    }

    /// Runs of whole frames of about `targetSize` decompressed bytes each (at least one frame;
    /// a run ends once it reaches the target), covering every frame in order.
    func runs(targetSize: Int) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var start = 0
        var size: UInt64 = 0
        for (index, frame) in frames.enumerated() {
            size += UInt64(frame.decompressed_size)
            if size >= UInt64(targetSize) {
                runs.append(start..<(index + 1))
                start = index + 1
                size = 0
            }
        }
        if start < frames.count { runs.append(start..<frames.count) }
        return runs
    }

    /// The compressed byte range of a run of frames.
    func compressedRange(_ run: Range<Int>) -> (offset: UInt64, length: UInt64) {
        let first = frames[run.lowerBound]
        let last = frames[run.upperBound - 1]
        return (
            first.compressed_offset, last.compressed_offset + UInt64(last.compressed_size) - first.compressed_offset
        )
    }

    /// The decompressed byte range of a run of frames.
    func decompressedRange(_ run: Range<Int>) -> Range<UInt64> {
        let first = frames[run.lowerBound]
        let last = frames[run.upperBound - 1]
        return first.decompressed_offset..<(last.decompressed_offset + UInt64(last.decompressed_size))
    }

    /// The run of whole frames that is exactly the compressed range `offset..<offset+length`, or
    /// nil when the range does not start and end on frame boundaries.
    func run(compressedOffset offset: UInt64, length: UInt64) -> Range<Int>? {
        guard length > 0 else { return nil }
        guard let first = frameStarting(at: offset), let after = frameEnding(at: offset + length, from: first) else {
            return nil
        }
        return first..<after
    }

    private func frameStarting(at offset: UInt64) -> Int? {
        var low = 0
        var high = frames.count
        while low < high {
            let mid = (low + high) / 2
            if frames[mid].compressed_offset < offset { low = mid + 1 } else { high = mid }
        }
        return low < frames.count && frames[low].compressed_offset == offset ? low : nil
    }

    private func frameEnding(at end: UInt64, from first: Int) -> Int? {
        if end == tableOffset { return frames.count > first ? frames.count : nil }
        guard let next = frameStarting(at: end), next > first else { return nil }
        return next
    }

    private static func corrupt(_ name: String, at offset: UInt64, _ what: String, _ code: Int64) -> ElasticFlowError {
        .corruptInput(
            source: name, format: "seekable zstd", offset: offset,
            reason: "\(what) (\(String(cString: ef_strerror(Int32(truncatingIfNeeded: code)))))")
    }

    /// `pread` of exactly `bytes.count` bytes at `offset`.
    static func readFully(_ fd: Int32, into bytes: inout [UInt8], at offset: UInt64, name: String)
        throws(ElasticFlowError)
    {
        let count = bytes.count
        let failure: Int32? = bytes.withUnsafeMutableBytes { buffer in
            var done = 0
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                if n > 0 {
                    done += n
                } else if n == 0 {
                    return EIO
                } else if errno != EINTR {
                    return errno
                }
            }
            return nil
        }
        if let failure { throw .io(path: name, operation: "read", errno: failure) }
    }
}

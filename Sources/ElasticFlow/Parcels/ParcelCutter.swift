#if canImport(Glibc)
    import Glibc
#endif

/// Where a parcel's bytes came from: the index of its first source, the byte offset in it, the
/// parcel's length, and the last source it holds bytes of. A packed parcel (`lastSource >
/// source`) holds the rest of its first source, then the following sources whole, each after a
/// `\n` when the one before does not end with one (see `ParcelCutter`): its length runs past the
/// end of its first source.
public struct ParcelOrigin: Hashable, Sendable {
    /// The index of the parcel's first source in the step's list.
    public let source: Int
    /// The parcel's first byte in its first source (in the decoded text for a compressed source).
    public let offset: UInt64
    /// The parcel's length in bytes (past the end of its first source, for a packed parcel).
    public let length: Int
    /// The index of the last source the parcel holds bytes of (`source`, unless it is packed).
    public let lastSource: Int

    init(source: Int, offset: UInt64, length: Int, lastSource: Int? = nil) {
        self.source = source
        self.offset = offset
        self.length = length
        self.lastSource = lastSource ?? source
    }
}

/// Cuts a list of sources into parcels of about `parcelSize` bytes, each ending at a line boundary
/// (or, in a line longer than a parcel, at the last whitespace), so no word is ever split between
/// two parcels and parcels can be counted independently. The single-node count and the cluster's
/// master cut the same way.
///
/// Small sources are packed several to a parcel: when a source ends with room left in its parcel,
/// the following sources are read into the same parcel for as long as each fits whole (a source
/// that does not fit starts the next parcel, its bytes read so far carried over). A `\n` goes
/// between two sources when the first does not end with one, so a source boundary is always a word
/// and line boundary: every task sees what it would see with one parcel per source. A parcel
/// still starts only at a source's start or at a cut inside it, so a packed parcel is named by its
/// first source and offset, like any other (`ParcelOrigin`).
///
/// Streams: it holds one parcel plus the short tail carried to the next one, whatever the source
/// size. A compressed source (decompression `auto`) is cut from its decompressed text, so offsets
/// are offsets in that text; a parcel never grows past its target (or a word's end) from
/// decompression. Not thread-safe (see `SharedParcelCutter`).
final class ParcelCutter {
    let sources: [DataSource]
    let parcelSize: Int
    /// The longest word accepted: a parcel runs past its target only to the end of a word, and
    /// never further than this (so a word with no end, `/dev/zero`, fails instead of filling memory).
    let maxWordSize: Int
    /// The up-front check of the sources, holding the descriptors it kept: every source that
    /// cannot be opened twice (FIFOs, character devices, `/dev/stdin`: no byte may be lost between
    /// two opens) and regular files up to its budget (one `open` a file, not two), each handed to
    /// the reader when the cutter reaches its source.
    private let checked: CheckedSources
    private var nextSource = 0
    private var currentSource = -1
    private var fd: Int32 = -1
    /// Whether a source is being read (a file's `fd`, or a custom source's chunks).
    private var reading = false
    private var offset: UInt64 = 0  // bytes read from the current source
    private var carry: ParcelBuffer
    /// The current source's bytes, decompressed when it is compressed (and decompression is on).
    private let reader: SourceReader
    /// The current source's size when it is a regular file (nil otherwise), for `nextRange`.
    private var fileSize: UInt64?
    /// `nextRange`'s reads back from a parcel's end (made at its first use).
    private var window: ParcelBuffer?
    /// The bytes `nextRange` reads at a time, back from a parcel's end.
    static let tailWindow = 64 << 10

    /// Checks every source up front (open, not a directory: `CheckedSources`).
    convenience init(
        sources: [DataSource], parcelSize: Int, maxWordSize: Int = Limits.defaultMaxWordSize,
        decompression: Decompression = .auto
    ) throws(ElasticFlowError) {
        try Self.check(parcelSize: parcelSize, maxWordSize: maxWordSize)
        try self.init(
            checked: CheckedSources(sources, readingFormats: false), parcelSize: parcelSize, maxWordSize: maxWordSize,
            decompression: decompression)
    }

    /// Cuts sources already checked, reading them from the descriptors the check kept.
    init(
        checked: CheckedSources, parcelSize: Int, maxWordSize: Int = Limits.defaultMaxWordSize,
        decompression: Decompression = .auto
    ) throws(ElasticFlowError) {
        try Self.check(parcelSize: parcelSize, maxWordSize: maxWordSize)
        self.checked = checked
        sources = checked.sources
        self.parcelSize = parcelSize
        self.maxWordSize = maxWordSize
        carry = ParcelBuffer(capacity: 4096)
        reader = SourceReader(decompression: decompression)
    }

    private static func check(parcelSize: Int, maxWordSize: Int) throws(ElasticFlowError) {
        guard parcelSize >= 1 else { throw .invalidArgument("parcel size must be at least 1 byte") }
        guard maxWordSize >= 1 else { throw .invalidArgument("the word-size cap must be at least 1 byte") }
    }

    deinit { closeCurrent() }  // the check closes the descriptors not handed over

    private func closeCurrent() {
        if fd > STDIN_FILENO { close(fd) }
        fd = -1
        fileSize = nil
        reader.end()
        reading = false
    }

    /// Fills `buffer` with the next parcel.
    /// - Returns: where the parcel came from, or nil when every source is exhausted.
    func next(into buffer: ParcelBuffer) throws(ElasticFlowError) -> ParcelOrigin? {
        buffer.count = 0
        if buffer.capacity < parcelSize { buffer.grow(to: parcelSize) }
        while true {
            if !reading {
                guard nextSource < sources.count else { return nil }
                try openNext()
            }
            if carry.count > 0 {
                if buffer.capacity < carry.count { buffer.grow(to: carry.count * 2) }
                buffer.base.copyMemory(from: carry.base, byteCount: carry.count)
                buffer.count = carry.count
                carry.count = 0
            }
            let start = offset - UInt64(buffer.count)
            // Parcels depend only on the bytes and the parcel size, never on a buffer's capacity
            // (recycled buffers may have grown): a resumed step must cut exactly the same parcels.
            var limit = max(parcelSize, buffer.count)
            while true {
                if buffer.capacity < limit { buffer.grow(to: limit) }
                let atEnd = try fill(buffer, upTo: limit)
                if atEnd {
                    closeCurrent()
                    if buffer.count == 0 { break }  // empty source: go on to the next one
                    let first = currentSource
                    let last = try pack(into: buffer)
                    return ParcelOrigin(source: first, offset: start, length: buffer.count, lastSource: last)
                }
                if let cut = Self.cutPoint(buffer.base.assumingMemoryBound(to: UInt8.self), buffer.count) {
                    carryOver(buffer, from: cut)
                    buffer.count = cut
                    return ParcelOrigin(source: currentSource, offset: start, length: cut)
                }
                // A word longer than a parcel: read further (doubling) until it ends, up to the cap
                // (the buffer holds no whitespace: all of it is one word).
                guard buffer.count <= maxWordSize else {
                    let source = sources[currentSource].description
                    closeCurrent()
                    throw .wordTooLong(source: source, offset: start, cap: maxWordSize)
                }
                limit = min(limit * 2, max(parcelSize, maxWordSize + 1))
            }
        }
    }

    /// The next parcel, cut without reading it, when it is a byte range of a plain regular file
    /// that ends before the file does, or the rest of the step's last file (no source follows
    /// that could be packed into it): the cut `next(into:)` would make — just past the last
    /// newline within `parcelSize` bytes, or the file's end — found by reading back from the
    /// parcel's end, a window at a time (one 64 KiB read for text with lines shorter than that). Copy mode sends such a parcel from the file (`sendfile`):
    /// the master never holds its bytes.
    /// - Returns: the parcel's origin; nil when the next parcel is not such a range, or holds no
    ///   newline, or the file ended sooner than it was (then `next(into:)` cuts it, reading it).
    func nextRange() throws(ElasticFlowError) -> ParcelOrigin? {
        if !reading {
            guard nextSource < sources.count else { return nil }
            try openNext()
        }
        guard carry.count == 0, fd >= 0, let size = fileSize, reader.format == InputDecoder.plain, offset < size
        else { return nil }
        if offset + UInt64(parcelSize) > size {
            // The file's last parcel: the rest of it, unless sources follow (they may be packed
            // into it, which takes reading). (Exactly `parcelSize` left is cut at its last
            // newline, as reading does: it fills the buffer before it sees the end.)
            guard nextSource == sources.count else { return nil }
            let origin = ParcelOrigin(source: currentSource, offset: offset, length: Int(size - offset))
            try reader.skip(origin.length)
            offset = size
            return origin
        }
        guard offset + UInt64(parcelSize) < size else { return nil }
        let window = self.window ?? ParcelBuffer(capacity: Self.tailWindow)
        self.window = window
        var end = offset + UInt64(parcelSize)
        while end > offset {
            let start = end - min(end - offset, UInt64(Self.tailWindow))
            let count = Int(end - start)
            var read = 0
            while read < count {
                let n = pread(fd, window.base + read, count - read, off_t(start) + off_t(read))
                if n > 0 {
                    read += n
                } else if n == 0 || errno != EINTR {
                    return nil  // shorter than it was, or unreadable: the reading path tells
                }
            }
            // Back from the end: the last newline is usually a line's length away.
            let bytes = window.base.assumingMemoryBound(to: UInt8.self)
            var index = count
            while index > 0 && bytes[index - 1] != UInt8(ascii: "\n") { index -= 1 }
            if index > 0 {
                let length = Int(start - offset) + index
                let origin = ParcelOrigin(source: currentSource, offset: offset, length: length)
                try reader.skip(length)
                offset += UInt64(length)
                return origin
            }
            end = start
        }
        return nil
    }

    /// Opens `sources[nextSource]` and makes it the current source.
    private func openNext() throws(ElasticFlowError) {
        let source = sources[nextSource]
        currentSource = nextSource
        nextSource += 1
        offset = 0
        reading = true
        do {
            if case .custom = source {
                try reader.begin(chunks: source.chunkReader(), name: source.description)
            } else {
                if let kept = checked.takeDescriptor(currentSource) {
                    fd = kept
                } else {
                    fd = try source.open()
                }
                try reader.begin(fd, name: source.description)
                var status = stat()
                fileSize =
                    fstat(fd, &status) == 0 && status.st_mode & S_IFMT == S_IFREG ? UInt64(status.st_size) : nil
            }
        } catch {
            closeCurrent()
            throw error
        }
    }

    /// After a parcel reached the end of its source with room left (the buffer holds fewer than
    /// `parcelSize` bytes): appends the following sources while each fits whole, a `\n` before
    /// each one that follows bytes not ending in `\n`. The first source that does not fit stays
    /// current, with the bytes read of it carried to the next parcel, which it starts.
    /// - Returns: the last source the parcel holds bytes of.
    private func pack(into buffer: ParcelBuffer) throws(ElasticFlowError) -> Int {
        var last = currentSource
        while buffer.count < parcelSize && nextSource < sources.count {
            try openNext()
            let boundary = buffer.count
            // Room for it: boundary < parcelSize <= capacity.
            if buffer.base.load(fromByteOffset: boundary - 1, as: UInt8.self) != UInt8(ascii: "\n") {
                buffer.base.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: boundary, as: UInt8.self)
                buffer.count += 1
            }
            let begin = buffer.count
            if try fill(buffer, upTo: parcelSize) {
                closeCurrent()
                if buffer.count == begin {
                    buffer.count = boundary  // an empty source adds nothing, not even the separator
                } else {
                    last = currentSource
                }
                continue
            }
            // It does not fit: the parcel ends before it, and it starts the next one.
            carryOver(buffer, from: begin)
            buffer.count = boundary
            break
        }
        return last
    }

    /// Keeps the buffer's bytes from `start` on for the next parcel (the caller shortens the buffer).
    private func carryOver(_ buffer: ParcelBuffer, from start: Int) {
        let tail = buffer.count - start
        guard tail > 0 else { return }
        if carry.capacity < tail { carry.grow(to: tail * 2) }
        carry.base.copyMemory(from: buffer.base + start, byteCount: tail)
        carry.count = tail
    }

    /// Reads until the buffer holds `limit` bytes or the source ends. Returns true at end of source.
    private func fill(_ buffer: ParcelBuffer, upTo limit: Int) throws(ElasticFlowError) -> Bool {
        while buffer.count < limit {
            let n: Int
            do {
                n = try reader.read(into: buffer.base + buffer.count, count: limit - buffer.count)
            } catch {
                closeCurrent()
                throw error
            }
            if n == 0 { return true }
            buffer.count += n
            offset += UInt64(n)
        }
        return false
    }

    /// The length of the parcel to cut from a full buffer: just past its last newline, else just
    /// past its last whitespace byte; nil when the buffer holds no whitespace at all.
    static func cutPoint(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> Int? {
        var i = count
        while i > 0 {
            i -= 1
            if bytes[i] == UInt8(ascii: "\n") { return i + 1 }
        }
        i = count
        while i > 0 {
            i -= 1
            switch bytes[i] {
            case 0x20, 0x09, 0x0B, 0x0C, 0x0D: return i + 1
            default: continue
            }
        }
        return nil
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// Bytes of one parcel, in a reusable buffer that one thread owns.
///
/// The capacity is the parcel size; it grows (a slow path) only when a single word is longer than
/// a parcel, since parcels never split a word.
final class ParcelBuffer {
    private(set) var base: UnsafeMutableRawPointer
    private(set) var capacity: Int
    var count = 0
    /// The capacity it was made with: what `releaseOversized` goes back to.
    let normalCapacity: Int

    /// Capacity a buffer may keep after use: any parcel up to this size (a shared-input split and
    /// its look-ahead, a parcel with a long word) reuses the buffer; a larger one (a 256 MiB
    /// decompression bomb, a huge result) is given back once used, so one big parcel never leaves
    /// a thread holding its memory.
    static let retainedCapacity = 64 << 20

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        normalCapacity = self.capacity
        base = .allocate(byteCount: self.capacity, alignment: 64)
    }

    /// Gives memory back after a parcel that grew the buffer past `retainedCapacity` (and past
    /// its normal capacity): back to the normal capacity, contents dropped. The caller is done
    /// with the bytes.
    func releaseOversized() {
        guard capacity > max(normalCapacity, Self.retainedCapacity) else { return }
        base.deallocate()
        capacity = normalCapacity
        base = .allocate(byteCount: capacity, alignment: 64)
        count = 0
    }

    deinit { base.deallocate() }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    func grow(to newCapacity: Int) {
        guard newCapacity > capacity else { return }
        let newBase = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 64)
        newBase.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }
}

/// Where a parcel's bytes came from: the source's index and the byte range within it.
public struct ParcelOrigin: Hashable, Sendable {
    public let source: Int
    public let offset: UInt64
    public let length: Int
}

/// Cuts a list of sources into parcels of about `parcelSize` bytes, each ending at a line boundary
/// (or, in a line longer than a parcel, at the last whitespace), so no word is ever split between
/// two parcels and parcels can be counted independently. The single-node count and the cluster's
/// master cut the same way.
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
    /// Sources that cannot be opened twice (FIFOs, character devices, `/dev/stdin`): opened once
    /// by the up-front check and read from that descriptor, so no byte is lost between the two.
    private var opened: [Int: Int32]
    private var nextSource = 0
    private var currentSource = -1
    private var fd: Int32 = -1
    /// Whether a source is being read (a file's `fd`, or a custom source's chunks).
    private var reading = false
    private var offset: UInt64 = 0  // bytes read from the current source
    private var carry: ParcelBuffer
    /// The current source's bytes, decompressed when it is compressed (and decompression is on).
    private let reader: SourceReader

    /// Validates every source up front (open, not a directory).
    init(
        sources: [DataSource], parcelSize: Int, maxWordSize: Int = Limits.defaultMaxWordSize,
        decompression: Decompression = .auto
    ) throws(ElasticFlowError) {
        guard parcelSize >= 1 else { throw .invalidArgument("parcel size must be at least 1 byte") }
        guard maxWordSize >= 1 else { throw .invalidArgument("the word-size cap must be at least 1 byte") }
        opened = try DataSource.validate(sources)
        self.sources = sources
        self.parcelSize = parcelSize
        self.maxWordSize = maxWordSize
        carry = ParcelBuffer(capacity: 4096)
        reader = SourceReader(decompression: decompression)
    }

    deinit {
        closeCurrent()
        for (_, fd) in opened where fd > STDIN_FILENO { close(fd) }
    }

    private func closeCurrent() {
        if fd > STDIN_FILENO { close(fd) }
        fd = -1
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
                let source = sources[nextSource]
                currentSource = nextSource
                nextSource += 1
                offset = 0
                reading = true
                do {
                    if case .custom = source {
                        try reader.begin(chunks: source.chunkReader(), name: source.description)
                    } else {
                        if let kept = opened.removeValue(forKey: currentSource) {
                            fd = kept
                        } else {
                            fd = try source.open()
                        }
                        try reader.begin(fd, name: source.description)
                    }
                } catch {
                    closeCurrent()
                    throw error
                }
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
                    return ParcelOrigin(source: currentSource, offset: start, length: buffer.count)
                }
                if let cut = Self.cutPoint(buffer.base.assumingMemoryBound(to: UInt8.self), buffer.count) {
                    let tail = buffer.count - cut
                    if tail > 0 {
                        if carry.capacity < tail { carry.grow(to: tail * 2) }
                        carry.base.copyMemory(from: buffer.base + cut, byteCount: tail)
                        carry.count = tail
                    }
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

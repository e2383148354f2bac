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

    /// A buffer at least this big is aligned to a huge page and advised to use them
    /// (`MADV_HUGEPAGE`: transparent huge pages in their `madvise` mode, Debian's default): its
    /// first touch then costs 2 page faults per 4 MiB instead of 1,024. Without it, filling a copy-mode
    /// master's first parcel buffers a 4 KiB page at a time was 15% of its CPU (`perf`, 173 MB).
    static let hugePageBytes = 2 << 20

    private static func allocate(_ capacity: Int) -> UnsafeMutableRawPointer {
        guard capacity >= hugePageBytes else { return .allocate(byteCount: capacity, alignment: 64) }
        let base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: hugePageBytes)
        #if canImport(Glibc)
            // Advice only: where huge pages are off, the buffer is an ordinary one.
            _ = madvise(base, capacity & ~(hugePageBytes - 1), MADV_HUGEPAGE)
        #endif
        return base
    }

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        normalCapacity = self.capacity
        base = Self.allocate(self.capacity)
    }

    /// Gives memory back after a parcel that grew the buffer past `retainedCapacity` (and past
    /// its normal capacity): back to the normal capacity, contents dropped. The caller is done
    /// with the bytes.
    func releaseOversized() {
        guard capacity > max(normalCapacity, Self.retainedCapacity) else { return }
        base.deallocate()
        capacity = normalCapacity
        base = Self.allocate(capacity)
        count = 0
    }

    deinit { base.deallocate() }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    func grow(to newCapacity: Int) {
        guard newCapacity > capacity else { return }
        let newBase = Self.allocate(newCapacity)
        newBase.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }
}

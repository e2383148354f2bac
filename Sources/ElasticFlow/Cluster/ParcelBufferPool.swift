internal import CElasticFlow
import Foundation

/// The step's recycled buffers: raw parcels (`parcelSize` bytes) and compressed wire copies.
///
/// It has a lock of its own, a leaf: the loop's zero-copy release callbacks come here, and a
/// release may run inside a send or close made while the step lock (or the cutter's) is held.
/// Nothing else is taken under it.
///
/// A parcel sent without compression is written straight from its buffer: the buffer goes back
/// to the free list only when its receipt is closed *and* no send of it is still queued (a node
/// presumed dead may still have one).
final class ParcelBufferPool: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = NSLock()
    private var freeParcels: [ParcelBuffer] = []
    private var freeWire: [ParcelBuffer] = []
    /// Queued zero-copy sends per parcel buffer.
    private var inTransit: [ObjectIdentifier: Int] = [:]
    /// Closed parcels waiting for their last queued send.
    private var retired: [ObjectIdentifier: ParcelBuffer] = [:]
    private let parcelSize: Int

    init(parcelSize: Int) { self.parcelSize = parcelSize }

    /// A buffer to cut a parcel into.
    func takeParcel() -> ParcelBuffer {
        lock.withLock { freeParcels.popLast() } ?? ParcelBuffer(capacity: parcelSize)
    }

    /// A buffer to compress a parcel of `rawBytes` into.
    func takeWire(for compression: Compression, rawBytes: Int) -> ParcelBuffer {
        lock.withLock { freeWire.popLast() } ?? ParcelBuffer(capacity: ef_codec_bound(compression.codecID, rawBytes))
    }

    func recycleWire(_ buffer: ParcelBuffer) {
        buffer.releaseOversized()
        lock.withLock { freeWire.append(buffer) }
    }

    /// A zero-copy send of the parcel's own bytes is queued.
    func markInTransit(_ buffer: ParcelBuffer) {
        lock.withLock { inTransit[ObjectIdentifier(buffer), default: 0] += 1 }
    }

    /// A queued send of the parcel's own bytes is done (written, or its connection gone).
    func sent(_ buffer: ParcelBuffer) {
        lock.withLock {
            let id = ObjectIdentifier(buffer)
            let left = inTransit[id, default: 1] - 1
            inTransit[id] = left > 0 ? left : nil
            if left <= 0, let waiting = retired.removeValue(forKey: id) { freeParcels.append(waiting) }
        }
    }

    /// The receipt is closed (or the parcel never needs sending): the buffer is free once no send
    /// of it is queued any more.
    func recycleParcel(_ buffer: ParcelBuffer) {
        lock.withLock {
            let id = ObjectIdentifier(buffer)
            if inTransit[id] != nil { retired[id] = buffer } else { freeParcels.append(buffer) }
        }
    }
}

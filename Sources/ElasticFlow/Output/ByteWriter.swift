#if canImport(Glibc)
    import Glibc
#endif

/// A buffered writer of bytes to a file descriptor (64 KiB at a time), or into memory. It writes
/// only when told (`flush`), so a caller can fill it under a lock and write outside it.
struct ByteWriter: ~Copyable {
    private let fd: Int32  // -1: keep everything in `bytes`
    private(set) var bytes: [UInt8] = []
    private let flushThreshold = 64 * 1024

    init(fileDescriptor: Int32) {
        fd = fileDescriptor
        bytes.reserveCapacity(flushThreshold + 4096)
    }

    init() { fd = -1 }

    mutating func append(_ byte: UInt8) {
        bytes.append(byte)
    }

    mutating func append(_ buffer: UnsafeBufferPointer<UInt8>) {
        bytes.append(contentsOf: buffer)
    }

    mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Decimal digits of an unsigned integer, without going through String.
    mutating func append(decimal value: UInt64) {
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes: enough for 20 digits
        withUnsafeMutableBytes(of: &digits) { raw in
            var v = value
            var i = raw.count
            repeat {
                i -= 1
                raw[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            } while v > 0
            bytes.append(contentsOf: raw[i...])
        }
    }

    /// Whether it holds a buffer's worth to write (never, in memory: it keeps everything).
    var isFull: Bool { fd >= 0 && bytes.count >= flushThreshold }

    mutating func flush() throws(ElasticFlowError) {
        guard fd >= 0 else { return }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: "standard output", operation: "write to", errno: errno)
            }
            offset += n
        }
        bytes.removeAll(keepingCapacity: true)
    }
}

/// A key whose hash is the same in every process and on every run, so that every node routes it
/// to the same stage. Swift's `Hasher` is seeded per process and cannot serve.
public protocol StableHashable {
    /// 64-bit FNV-1a of the key's canonical bytes.
    var stableHash: UInt64 { get }
}

/// FNV-1a, 64 bits: tiny, fixed, and good enough to spread keys over a few stages.
public enum StableHash {
    static let offsetBasis: UInt64 = 0xCBF2_9CE4_8422_2325
    static let prime: UInt64 = 0x0000_0100_0000_01B3

    /// FNV-1a of bytes.
    public static func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash = offsetBasis
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= prime
        }
        return hash
    }

    /// FNV-1a of an integer's 8 little-endian bytes.
    static func fnv1a(_ value: UInt64) -> UInt64 {
        var hash = offsetBasis
        var rest = value
        for _ in 0..<8 {
            hash ^= rest & 0xFF
            hash &*= prime
            rest >>= 8
        }
        return hash
    }
}

/// Hashes the UTF-8 bytes.
extension String: StableHashable {
    /// FNV-1a of the string's UTF-8 bytes.
    public var stableHash: UInt64 {
        var string = self  // withUTF8 is mutating: it makes a bridged string native first
        return string.withUTF8 { StableHash.fnv1a($0) }
    }
}

/// Hashes the UTF-8 bytes (as the equal `String` does).
extension Substring: StableHashable {
    /// FNV-1a of the substring's UTF-8 bytes.
    public var stableHash: UInt64 { StableHash.fnv1a(utf8) }
}

/// Hashes the bytes.
extension Array: StableHashable where Element == UInt8 {
    /// FNV-1a of the bytes.
    public var stableHash: UInt64 { withUnsafeBufferPointer { StableHash.fnv1a($0) } }
}

/// Hashes the bytes.
extension ArraySlice: StableHashable where Element == UInt8 {
    /// FNV-1a of the bytes.
    public var stableHash: UInt64 { withUnsafeBufferPointer { StableHash.fnv1a($0) } }
}

/// Hashes the 8 little-endian bytes of the two's complement value.
extension Int: StableHashable {
    /// FNV-1a of the value's 8 little-endian bytes.
    public var stableHash: UInt64 { StableHash.fnv1a(UInt64(bitPattern: Int64(self))) }
}

/// Hashes the 8 little-endian bytes of the two's complement value.
extension Int64: StableHashable {
    /// FNV-1a of the value's 8 little-endian bytes.
    public var stableHash: UInt64 { StableHash.fnv1a(UInt64(bitPattern: self)) }
}

/// Hashes the 8 little-endian bytes.
extension UInt64: StableHashable {
    /// FNV-1a of the value's 8 little-endian bytes.
    public var stableHash: UInt64 { StableHash.fnv1a(self) }
}

/// Hashes the canonical encoding, so equal values built the same way hash the same everywhere.
extension FlowValue: StableHashable {
    /// FNV-1a of the value's canonical encoding (`encoded()`).
    public var stableHash: UInt64 { StableHash.fnv1a(encoded()) }
}

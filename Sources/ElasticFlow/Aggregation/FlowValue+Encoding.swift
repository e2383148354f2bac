/// The binary form of a `FlowValue`, carried in RESULT frames.
///
/// ```
/// encoding   := 0xEF 0x01 value              magic, format version
/// value      := 0x00                         null
///             | 0x01 | 0x02                  false | true
///             | 0x03 varint                  int, zigzag (small magnitudes take one byte)
///             | 0x04 u64le                   double, its IEEE 754 bit pattern
///             | 0x05 varint utf8             string: byte count, valid UTF-8
///             | 0x06 varint bytes            bytes: count, bytes
///             | 0x07 varint value*           array: element count, elements
///             | 0x08 varint (varint utf8 value)*
///                                            dictionary: entry count, entries in strictly
///                                            ascending order of the key's UTF-8 bytes
/// varint     := unsigned LEB128, at most 10 bytes, minimal (no superfluous 0x80 / 0x00 tail)
/// ```
///
/// The form is canonical: a value has exactly one encoding and the decoder accepts nothing else
/// (keys sorted and unique, minimal varints, no trailing bytes), so `decode(x).encoded() == x` for
/// every accepted `x`, and values built the same way encode to the same bytes on every node.
/// Strings are encoded as their exact UTF-8: two canonically equivalent strings of different
/// composition are `==` in Swift but encode differently.
extension FlowValue {
    static let magic: UInt8 = 0xEF
    static let formatVersion: UInt8 = 1

    enum Tag: UInt8 {
        case null = 0
        case `false` = 1
        case `true` = 2
        case int = 3
        case double = 4
        case string = 5
        case bytes = 6
        case array = 7
        case dictionary = 8
    }

    /// The canonical binary encoding (see the format above).
    public func encoded() -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(64)
        output.append(Self.magic)
        output.append(Self.formatVersion)
        encode(into: &output)
        return output
    }

    private func encode(into output: inout [UInt8]) {
        switch self {
        case .null:
            output.append(Tag.null.rawValue)
        case .bool(let value):
            output.append(value ? Tag.true.rawValue : Tag.false.rawValue)
        case .int(let value):
            output.append(Tag.int.rawValue)
            // Zigzag: 0, -1, 1, -2, ... become 0, 1, 2, 3, ... so small negatives stay short.
            Self.appendVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)), to: &output)
        case .double(let value):
            output.append(Tag.double.rawValue)
            var bits = value.bitPattern
            for _ in 0..<8 {
                output.append(UInt8(truncatingIfNeeded: bits))
                bits >>= 8
            }
        case .string(let value):
            output.append(Tag.string.rawValue)
            Self.appendString(value, to: &output)
        case .bytes(let value):
            output.append(Tag.bytes.rawValue)
            Self.appendVarint(UInt64(value.count), to: &output)
            output += value
        case .array(let elements):
            output.append(Tag.array.rawValue)
            Self.appendVarint(UInt64(elements.count), to: &output)
            for element in elements { element.encode(into: &output) }
        case .dictionary(let entries):
            output.append(Tag.dictionary.rawValue)
            Self.appendVarint(UInt64(entries.count), to: &output)
            for key in Self.sortedKeys(entries) {
                Self.appendString(key, to: &output)
                entries[key]!.encode(into: &output)
            }
        }
    }

    private static func appendString(_ string: String, to output: inout [UInt8]) {
        let utf8 = string.utf8
        appendVarint(UInt64(utf8.count), to: &output)
        output += utf8
    }

    private static func appendVarint(_ value: UInt64, to output: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            output.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        output.append(UInt8(rest))
    }

    /// Decodes a canonical encoding. Every read is bounds-checked, nesting is limited to
    /// `maximumNestingDepth`, and every count is checked against the bytes left before anything is
    /// allocated, so hostile input costs at most memory proportional to its own size.
    /// - Throws: `ElasticFlowError.malformedValue` saying what is wrong and at which byte.
    public init(decoding bytes: [UInt8]) throws(ElasticFlowError) {
        self = try bytes.withUnsafeBytes { buffer in
            Result { () throws(ElasticFlowError) in try FlowValue(decoding: buffer) }
        }.get()
    }

    /// Decodes an encoding in memory the caller keeps valid for the call.
    init(decoding buffer: UnsafeRawBufferPointer) throws(ElasticFlowError) {
        var reader = FlowValueReader(buffer: buffer)
        guard buffer.count >= 2 else { throw reader.failure("truncated header") }
        guard buffer[0] == Self.magic else { throw reader.failure("bad magic byte") }
        guard buffer[1] == Self.formatVersion else {
            throw reader.failure("unsupported format version \(buffer[1])")
        }
        reader.position = 2
        self = try reader.value(depth: 0)
        guard reader.position == buffer.count else {
            throw reader.failure("\(buffer.count - reader.position) trailing bytes after the value")
        }
    }
}

/// A cursor over an encoding; every method checks bounds before it reads.
private struct FlowValueReader {
    let buffer: UnsafeRawBufferPointer
    var position = 0

    init(buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    var remaining: Int { buffer.count - position }

    func failure(_ message: String) -> ElasticFlowError {
        .malformedValue("\(message) (at byte \(position) of \(buffer.count))")
    }

    mutating func byte() throws(ElasticFlowError) -> UInt8 {
        guard position < buffer.count else { throw failure("truncated") }
        defer { position += 1 }
        return buffer[position]
    }

    mutating func varint() throws(ElasticFlowError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try byte()
            let payload = UInt64(byte & 0x7F)
            // The tenth byte holds the top bit only: anything more would overflow 64 bits.
            if shift == 63 && payload > 1 { throw failure("varint overflows 64 bits") }
            result |= payload << shift
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 { throw failure("non-minimal varint") }
                return result
            }
            shift += 7
            if shift > 63 { throw failure("varint longer than 10 bytes") }
        }
    }

    /// A count or length of items that each take at least `minimumItemSize` bytes: it cannot
    /// exceed what is left, which bounds every allocation by the input's size.
    mutating func count(minimumItemSize: Int, of what: String) throws(ElasticFlowError) -> Int {
        let start = position
        let value = try varint()
        guard value <= UInt64(remaining / minimumItemSize) else {
            position = start
            throw failure("\(what) count \(value) exceeds the \(remaining) bytes left")
        }
        return Int(value)
    }

    mutating func take(_ count: Int) -> UnsafeRawBufferPointer {
        // Callers obtain count from `count(minimumItemSize:of:)`, so it is in bounds.
        precondition(count <= remaining)
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: buffer[position..<position + count])
    }

    /// A length-prefixed UTF-8 string, and its bytes in the buffer.
    mutating func string(of what: String) throws(ElasticFlowError) -> (String, UnsafeRawBufferPointer) {
        let length = try count(minimumItemSize: 1, of: what)
        let start = position
        let bytes = take(length)
        guard let string = String(validating: bytes, as: UTF8.self) else {
            position = start
            throw failure("invalid UTF-8 in \(what)")
        }
        return (string, bytes)
    }

    mutating func value(depth: Int) throws(ElasticFlowError) -> FlowValue {
        let start = position
        let tagByte = try byte()
        guard let tag = FlowValue.Tag(rawValue: tagByte) else {
            position = start
            throw failure("unknown tag \(tagByte)")
        }
        switch tag {
        case .null:
            return .null
        case .false:
            return .bool(false)
        case .true:
            return .bool(true)
        case .int:
            let zigzag = try varint()
            return .int(Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1))
        case .double:
            guard remaining >= 8 else { throw failure("truncated double") }
            var bits: UInt64 = 0
            for index in 0..<8 { bits |= UInt64(buffer[position + index]) << (8 * UInt64(index)) }
            position += 8
            return .double(Double(bitPattern: bits))
        case .string:
            return .string(try string(of: "string").0)
        case .bytes:
            let length = try count(minimumItemSize: 1, of: "bytes")
            return .bytes(Array(take(length)))
        case .array:
            guard depth < FlowValue.maximumNestingDepth else { throw failure("nesting deeper than the limit") }
            let count = try count(minimumItemSize: 1, of: "array")
            var elements: [FlowValue] = []
            elements.reserveCapacity(count)
            for _ in 0..<count { elements.append(try value(depth: depth + 1)) }
            return .array(elements)
        case .dictionary:
            guard depth < FlowValue.maximumNestingDepth else { throw failure("nesting deeper than the limit") }
            // An entry takes at least a key length byte and a value tag.
            let count = try count(minimumItemSize: 2, of: "dictionary")
            var entries: [String: FlowValue] = [:]
            entries.reserveCapacity(count)
            var previousKey: UnsafeRawBufferPointer? = nil
            for _ in 0..<count {
                let keyStart = position
                let (key, rawKey) = try string(of: "dictionary key")
                if let previousKey, !previousKey.lexicographicallyPrecedes(rawKey) {
                    position = keyStart
                    throw failure("dictionary keys not in strictly ascending order")
                }
                previousKey = rawKey
                let element = try value(depth: depth + 1)
                // Distinct bytes can still be canonically equivalent strings, hence one Swift key.
                guard entries.updateValue(element, forKey: key) == nil else {
                    position = keyStart
                    throw failure("duplicate dictionary key")
                }
            }
            return .dictionary(entries)
        }
    }
}

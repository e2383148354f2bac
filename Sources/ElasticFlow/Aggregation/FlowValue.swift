/// A dynamically typed value: what a flow task returns for a parcel, what crosses the wire in a
/// RESULT frame (see `encoded()`), and what aggregators fold into a step's output.
///
/// The cases mirror what the Elixir original could return from a task (maps, numbers, strings,
/// lists), with `bytes` for data that is not text. Dictionary keys are strings.
///
/// Equality is Swift's: strings compare by canonical equivalence and doubles by `==` (so `0.0 ==
/// -0.0` and a NaN is unequal to itself).
public enum FlowValue: Hashable, Sendable {
    /// Nothing: what an empty parcel produces; aggregating with it changes nothing.
    case null
    /// A Boolean.
    case bool(Bool)
    /// A signed 64-bit integer; the default aggregator's sums of them throw on overflow.
    case int(Int64)
    /// A 64-bit floating-point number.
    case double(Double)
    /// Text, encoded as UTF-8 on the wire.
    case string(String)
    /// Raw bytes: data that need not be text (a word that is not valid UTF-8, a digest).
    case bytes([UInt8])
    /// An ordered list of values.
    case array([FlowValue])
    /// Values by string key (counts per word, records); the canonical encoding sorts the keys.
    case dictionary([String: FlowValue])

    /// Creates the value of anything convertible (`FlowValue(3)`, `FlowValue(["a": 1])`).
    public init(_ value: some FlowValueConvertible) {
        self = value.flowValue
    }
}

// MARK: - Accessors

extension FlowValue {
    /// Whether this is `.null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The payload of `.bool`, else nil.
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The payload of `.int`, else nil.
    public var intValue: Int64? {
        if case .int(let value) = self { return value }
        return nil
    }

    /// The payload of `.double`, else nil.
    public var doubleValue: Double? {
        if case .double(let value) = self { return value }
        return nil
    }

    /// An `.int` or `.double` as a `Double`, else nil.
    public var numberValue: Double? {
        switch self {
        case .int(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    /// The payload of `.string`, else nil.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The payload of `.bytes`, else nil.
    public var bytesValue: [UInt8]? {
        if case .bytes(let value) = self { return value }
        return nil
    }

    /// The payload of `.array`, else nil.
    public var arrayValue: [FlowValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// The payload of `.dictionary`, else nil.
    public var dictionaryValue: [String: FlowValue]? {
        if case .dictionary(let value) = self { return value }
        return nil
    }

    /// The value under `key` of a dictionary (nil for a missing key or another case).
    public subscript(key: String) -> FlowValue? {
        dictionaryValue?[key]
    }

    /// The element at `index` of an array (nil when out of range or for another case).
    public subscript(index: Int) -> FlowValue? {
        guard case .array(let elements) = self, elements.indices.contains(index) else { return nil }
        return elements[index]
    }

    /// Levels of containers: 0 for a scalar, 1 for an array or dictionary of scalars, and so on.
    /// Values nested deeper than `maximumNestingDepth` cannot be decoded, so tasks refuse them.
    public var nestingDepth: Int {
        switch self {
        case .array(let elements): return 1 + elements.reduce(0) { max($0, $1.nestingDepth) }
        case .dictionary(let entries): return 1 + entries.values.reduce(0) { max($0, $1.nestingDepth) }
        default: return 0
        }
    }

    /// The deepest nesting `init(decoding:)` accepts: it bounds the decoder's recursion on hostile
    /// input, and real results (tables of counts, records) are a few levels deep.
    public static let maximumNestingDepth = 100
}

// MARK: - Literals

extension FlowValue: ExpressibleByNilLiteral {
    /// `nil` as a literal: `.null`.
    public init(nilLiteral: ()) { self = .null }
}

extension FlowValue: ExpressibleByBooleanLiteral {
    /// `true` or `false` as a literal: `.bool`.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension FlowValue: ExpressibleByIntegerLiteral {
    /// An integer literal: `.int`.
    public init(integerLiteral value: Int64) { self = .int(value) }
}

extension FlowValue: ExpressibleByFloatLiteral {
    /// A floating-point literal: `.double`.
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension FlowValue: ExpressibleByStringLiteral {
    /// A string literal: `.string`.
    public init(stringLiteral value: String) { self = .string(value) }
}

extension FlowValue: ExpressibleByArrayLiteral {
    /// An array literal of values: `.array`.
    public init(arrayLiteral elements: FlowValue...) { self = .array(elements) }
}

extension FlowValue: ExpressibleByDictionaryLiteral {
    /// A later duplicate key replaces an earlier one.
    public init(dictionaryLiteral elements: (String, FlowValue)...) {
        self = .dictionary(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

// MARK: - Description

extension FlowValue: CustomStringConvertible {
    /// JSON-like text with keys sorted by their UTF-8 bytes, so equal values print equally:
    /// `{"a": 1, "b": [true, null, "x"]}`. Bytes print as `<0aff>`, non-finite doubles as `nan`,
    /// `inf`, `-inf` (the only departures from JSON).
    public var description: String {
        var text = ""
        write(to: &text)
        return text
    }

    private func write(to text: inout String) {
        switch self {
        case .null: text += "null"
        case .bool(let value): text += value ? "true" : "false"
        case .int(let value): text += String(value)
        case .double(let value):
            if value.isNaN {
                text += "nan"
            } else if value.isInfinite {
                text += value < 0 ? "-inf" : "inf"
            } else {
                text += String(value)
            }
        case .string(let value): Self.writeQuoted(value, to: &text)
        case .bytes(let value):
            text += "<"
            for byte in value {
                text.append(Self.hexDigits[Int(byte >> 4)])
                text.append(Self.hexDigits[Int(byte & 0x0F)])
            }
            text += ">"
        case .array(let elements):
            text += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { text += ", " }
                element.write(to: &text)
            }
            text += "]"
        case .dictionary(let entries):
            text += "{"
            for (index, key) in FlowValue.sortedKeys(entries).enumerated() {
                if index > 0 { text += ", " }
                Self.writeQuoted(key, to: &text)
                text += ": "
                entries[key]!.write(to: &text)
            }
            text += "}"
        }
    }

    private static let hexDigits: [Character] = Array("0123456789abcdef")

    private static func writeQuoted(_ string: String, to text: inout String) {
        text += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20:
                text += "\\u00"
                text.append(hexDigits[Int(scalar.value >> 4)])
                text.append(hexDigits[Int(scalar.value & 0x0F)])
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }

    /// Keys in ascending order of their UTF-8 bytes: the order of the encoding and the description
    /// (independent of locale, and for NFC text the same as Unicode scalar order).
    static func sortedKeys(_ entries: [String: FlowValue]) -> [String] {
        entries.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }
}

// MARK: - Conversions

/// A Swift value that has a `FlowValue` form: what a flow's `reduce` may accumulate into.
public protocol FlowValueConvertible: Sendable {
    /// This value as a `FlowValue`.
    var flowValue: FlowValue { get }
}

/// A value is its own flow value.
extension FlowValue: FlowValueConvertible {
    /// The value itself.
    public var flowValue: FlowValue { self }
}

/// A Boolean as a flow value: `.bool`.
extension Bool: FlowValueConvertible {
    /// `.bool(self)`.
    public var flowValue: FlowValue { .bool(self) }
}

/// An integer as a flow value: `.int`.
extension Int: FlowValueConvertible {
    /// `.int` of this value (an `Int` always fits in 64 bits here).
    public var flowValue: FlowValue { .int(Int64(self)) }
}

/// A 64-bit integer as a flow value: `.int`.
extension Int64: FlowValueConvertible {
    /// `.int(self)`.
    public var flowValue: FlowValue { .int(self) }
}

/// A 32-bit integer as a flow value: `.int`.
extension Int32: FlowValueConvertible {
    /// `.int` of this value, widened to 64 bits.
    public var flowValue: FlowValue { .int(Int64(self)) }
}

/// An unsigned 32-bit integer as a flow value: `.int`.
extension UInt32: FlowValueConvertible {
    /// `.int` of this value, widened to 64 bits.
    public var flowValue: FlowValue { .int(Int64(self)) }
}

/// A double as a flow value: `.double`.
extension Double: FlowValueConvertible {
    /// `.double(self)`.
    public var flowValue: FlowValue { .double(self) }
}

/// A string as a flow value: `.string`.
extension String: FlowValueConvertible {
    /// `.string(self)`.
    public var flowValue: FlowValue { .string(self) }
}

/// A substring as a flow value: `.string`.
extension Substring: FlowValueConvertible {
    /// `.string` of a copy of this substring.
    public var flowValue: FlowValue { .string(String(self)) }
}

/// `nil` becomes `.null`.
extension Optional: FlowValueConvertible where Wrapped: FlowValueConvertible {
    /// The wrapped value's form, or `.null` for `nil`.
    public var flowValue: FlowValue { self?.flowValue ?? .null }
}

/// An array of convertible elements becomes `.array` (for raw bytes, use `FlowValue.bytes`).
extension Array: FlowValueConvertible where Element: FlowValueConvertible {
    /// `.array` of each element's form, in order.
    public var flowValue: FlowValue { .array(map(\.flowValue)) }
}

/// A dictionary with string keys and convertible values becomes `.dictionary`.
extension Dictionary: FlowValueConvertible where Key == String, Value: FlowValueConvertible {
    /// `.dictionary` of each value's form, under the same keys.
    public var flowValue: FlowValue { .dictionary(mapValues(\.flowValue)) }
}

/// The aggregation of the Elixir original, applied recursively:
///
/// | accumulated, next        | result                                                       |
/// |--------------------------|--------------------------------------------------------------|
/// | dictionary, dictionary   | union; a key present in both gets both values combined by   |
/// |                          | this same rule (so counts per key add up)                   |
/// | int, int                 | sum (throws on overflow rather than wrap)                    |
/// | double, double           | sum                                                          |
/// | int, double / double, int| sum as a double                                              |
/// | string, string           | concatenation                                                |
/// | bytes, bytes             | concatenation                                                |
/// | array, array             | concatenation                                                |
/// | null, x / x, null        | x (null is "nothing yet", so an empty parcel changes nothing)|
/// | anything else            | next (the latest value wins)                                 |
///
/// Sums and dictionary merges give the same output whatever order results arrive in;
/// concatenation and "latest" follow arrival order, which varies from run to run.
public struct DefaultAggregator: Aggregator, CustomStringConvertible {
    /// Creates the default aggregator; it has no settings.
    public init() {}

    /// Returns `next` for the first value, otherwise combines the two by the rule in the table above.
    /// - Throws: `ElasticFlowError.invalidArgument` when an integer sum overflows.
    public func aggregate(_ accumulated: FlowValue?, _ next: FlowValue) throws -> FlowValue {
        guard let accumulated else { return next }
        return try Self.combine(accumulated, next)
    }

    /// The rule of the table above.
    /// - Throws: `ElasticFlowError.invalidArgument` when an integer sum overflows.
    public static func combine(_ accumulated: FlowValue, _ next: FlowValue) throws(ElasticFlowError) -> FlowValue {
        switch (accumulated, next) {
        case (.dictionary(var merged), .dictionary(let other)):
            // Fold the smaller into the larger: the same result, fewer copies.
            if merged.count < other.count {
                var larger = other
                for (key, value) in merged {
                    if let existing = larger[key] {
                        larger[key] = try combine(value, existing)
                    } else {
                        larger[key] = value
                    }
                }
                return .dictionary(larger)
            }
            for (key, value) in other {
                if let existing = merged[key] {
                    merged[key] = try combine(existing, value)
                } else {
                    merged[key] = value
                }
            }
            return .dictionary(merged)
        case (.int(let a), .int(let b)):
            return .int(try Self.add(a, b))
        case (.double(let a), .double(let b)):
            return .double(a + b)
        case (.int(let a), .double(let b)):
            return .double(Double(a) + b)
        case (.double(let a), .int(let b)):
            return .double(a + Double(b))
        case (.string(let a), .string(let b)):
            return .string(a + b)
        case (.bytes(let a), .bytes(let b)):
            return .bytes(a + b)
        case (.array(let a), .array(let b)):
            return .array(a + b)
        case (_, .null):
            return accumulated
        default:
            return next
        }
    }

    static func add(_ a: Int64, _ b: Int64) throws(ElasticFlowError) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        if overflow { throw .invalidArgument("integer overflow adding \(a) and \(b)") }
        return sum
    }

    /// `"DefaultAggregator"`.
    public var description: String { "DefaultAggregator" }
}

// MARK: - Named aggregators

extension Aggregator where Self == DefaultAggregator {
    /// The default rule (sums, merges per key, concatenation; see `DefaultAggregator`).
    public static var `default`: DefaultAggregator { DefaultAggregator() }
}

extension Aggregator where Self == CustomAggregator {
    /// Numbers only: int + int is an int (throws on overflow), any double makes a double;
    /// `.null` is ignored. Throws for any other value.
    public static var sum: CustomAggregator {
        CustomAggregator(name: "sum") { accumulated, next in
            switch (accumulated ?? .null, next) {
            case (.null, .int), (.null, .double): return next
            case (_, .null): return accumulated ?? .null
            case (.int(let a), .int(let b)): return .int(try DefaultAggregator.add(a, b))
            case (.int, .double), (.double, .int), (.double, .double):
                return .double(accumulated!.numberValue! + next.numberValue!)
            default:
                throw ElasticFlowError.invalidArgument("sum: cannot add \(accumulated ?? .null) and \(next)")
            }
        }
    }

    /// Keeps the latest value (arrival order: varies from run to run in a cluster).
    public static var latest: CustomAggregator {
        CustomAggregator(name: "latest") { _, next in next }
    }

    /// Keeps the greatest value by `FlowValue.compare` (numbers, strings, bytes; `.null` ignored).
    /// On a tie the value seen first stays.
    public static var max: CustomAggregator {
        CustomAggregator(name: "max") { accumulated, next in
            guard let accumulated, !accumulated.isNull else { return next }
            if next.isNull { return accumulated }
            return try FlowValue.compare(next, accumulated) > 0 ? next : accumulated
        }
    }

    /// Keeps the smallest value by `FlowValue.compare` (numbers, strings, bytes; `.null` ignored).
    /// On a tie the value seen first stays.
    public static var min: CustomAggregator {
        CustomAggregator(name: "min") { accumulated, next in
            guard let accumulated, !accumulated.isNull else { return next }
            if next.isNull { return accumulated }
            return try FlowValue.compare(next, accumulated) < 0 ? next : accumulated
        }
    }

    /// Concatenates strings, bytes or arrays (a non-array value is appended to an array as one
    /// element); `.null` is ignored. Throws for any other pair. Arrival order: varies from run to run.
    public static var concatenate: CustomAggregator {
        CustomAggregator(name: "concatenate") { accumulated, next in
            switch (accumulated ?? .null, next) {
            case (.null, _): return next
            case (_, .null): return accumulated!
            case (.string(let a), .string(let b)): return .string(a + b)
            case (.bytes(let a), .bytes(let b)): return .bytes(a + b)
            case (.array(let a), .array(let b)): return .array(a + b)
            case (.array(let a), _): return .array(a + [next])
            default:
                throw ElasticFlowError.invalidArgument("concatenate: cannot join \(accumulated!) and \(next)")
            }
        }
    }
}

extension FlowValue {
    /// Orders two comparable values: numbers numerically (an int and a double by their exact
    /// values), strings by their UTF-8 bytes, bytes lexicographically.
    /// - Returns: a negative number, zero or a positive number as `a` is below, equal to or above `b`.
    /// - Throws: `ElasticFlowError.invalidArgument` for values of kinds that have no order between them.
    public static func compare(_ a: FlowValue, _ b: FlowValue) throws(ElasticFlowError) -> Int {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            return x < y ? -1 : (x > y ? 1 : 0)
        case (.double(let x), .double(let y)):
            return compareDoubles(x, y)
        case (.int(let x), .double(let y)):
            return -compareDouble(y, withInteger: x)
        case (.double(let x), .int(let y)):
            return compareDouble(x, withInteger: y)
        case (.string(let x), .string(let y)):
            return compareBytes(x.utf8, y.utf8)
        case (.bytes(let x), .bytes(let y)):
            return compareBytes(x, y)
        default:
            throw .invalidArgument("cannot order \(a) and \(b)")
        }
    }

    /// Doubles in IEEE 754 total order (NaN above everything) so max/min stay deterministic.
    private static func compareDoubles(_ x: Double, _ y: Double) -> Int {
        if x.isTotallyOrdered(belowOrEqualTo: y) { return y.isTotallyOrdered(belowOrEqualTo: x) ? 0 : -1 }
        return 1
    }

    /// Compares without rounding the integer (doubles cannot hold every Int64).
    private static func compareDouble(_ x: Double, withInteger y: Int64) -> Int {
        if x.isNaN { return 1 }
        if x < -0x1p63 { return -1 }
        if x >= 0x1p63 { return 1 }
        let whole = Int64(x.rounded(.down))
        if whole != y { return whole < y ? -1 : 1 }
        return x > x.rounded(.down) ? 1 : 0
    }

    private static func compareBytes(_ x: some Sequence<UInt8>, _ y: some Sequence<UInt8>) -> Int {
        var left = x.makeIterator()
        var right = y.makeIterator()
        while true {
            switch (left.next(), right.next()) {
            case (nil, nil): return 0
            case (nil, _): return -1
            case (_, nil): return 1
            case (let l?, let r?): if l != r { return l < r ? -1 : 1 }
            }
        }
    }
}

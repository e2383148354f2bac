/// Parses sizes such as `4194304`, `512KiB`, `4MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB`,
/// all binary multiples, case-insensitive).
public enum ByteSize {
    /// - Throws: `ElasticFlowError.invalidArgument` for malformed text, zero or an overflow.
    public static func parse(_ text: String) throws(ElasticFlowError) -> Int {
        let trimmed = text.trimmingWhitespace()
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let unit = trimmed.dropFirst(digits.count).lowercased()
        let multipliers: [String: Int] = [
            "": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
            "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
        ]
        guard let value = Int(digits), let multiplier = multipliers[unit] else {
            throw .invalidArgument("invalid size '\(text)': expected a number with an optional KiB, MiB or GiB suffix")
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow, product > 0 else { throw .invalidArgument("invalid size '\(text)': must be at least 1 byte") }
        return product
    }
}

extension String {
    func trimmingWhitespace() -> Substring {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return self[first...last]
    }
}

extension ByteSize {
    /// A size as the shortest exact text `parse` reads back: `4MiB`, `1500`, `64KiB`.
    public static func describe(_ bytes: Int) -> String {
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] where bytes >= 1 << shift {
            if bytes % (1 << shift) == 0 { return "\(bytes >> shift)\(unit)" }
        }
        return "\(bytes)"
    }
}

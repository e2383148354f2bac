/// Text a peer sent (an ERROR frame's message, a HELLO's name, a join refusal) or a file holds
/// (a damaged step journal quoted in its error), made safe to print on one line: control characters and ANSI escapes are shown escaped (`\n`, `\t`, `\x1b`, …), invalid
/// UTF-8 as `\xNN`, and anything past `limit` bytes is cut, with `…(N bytes)` naming the length
/// received. Every place that logs or reports such text goes through this one helper.
enum PeerText {
    /// The default cut: a sane length for one log line.
    static let limit = 512

    /// - Parameters:
    ///   - bytes: the raw bytes, as received.
    ///   - limit: the most bytes of input shown.
    /// - Returns: one line of printable text.
    static func escaped(_ bytes: some Collection<UInt8>, limit: Int = PeerText.limit) -> String {
        let total = bytes.count
        var out = ""
        out.reserveCapacity(min(total, limit) + 16)
        var shown = bytes.prefix(limit)
        // Decode the shown prefix as UTF-8, escaping what is not printable; an invalid or cut
        // sequence shows as its bytes.
        while let first = shown.first {
            var width = PeerText.sequenceLength(first)
            // C1 controls (U+0080...U+009F, C2 80...C2 9F) include the 8-bit CSI: escaped.
            if first == 0xC2, let second = shown.dropFirst().first, second < 0xA0 { width = 1 }
            let sequence = Array(shown.prefix(width))
            if width > 1, sequence.count == width, let scalar = String(validating: sequence, as: UTF8.self) {
                // Line and paragraph separators and the format characters (bidirectional
                // overrides among them) can break or disguise a line: shown as `\u{XXXX}`.
                let unicode = scalar.unicodeScalars.first!
                switch unicode.properties.generalCategory {
                case .lineSeparator, .paragraphSeparator, .format:
                    out += "\\u{" + String(unicode.value, radix: 16, uppercase: true) + "}"
                default: out += scalar
                }
                shown = shown.dropFirst(width)
                continue
            }
            shown = shown.dropFirst()
            switch first {
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x5C: out += "\\\\"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(first))
            default: out += "\\x" + (first < 0x10 ? "0" : "") + String(first, radix: 16)
            }
        }
        if total > limit { out += "…(\(total) bytes)" }
        return out
    }

    /// The same for text already decoded (a peer's name kept as a String).
    static func escaped(_ text: String, limit: Int = PeerText.limit) -> String {
        escaped(Array(text.utf8), limit: limit)
    }

    /// Bytes in the UTF-8 sequence that starts with `lead` (1 for ASCII and stray bytes).
    private static func sequenceLength(_ lead: UInt8) -> Int {
        switch lead {
        case 0xC2...0xDF: return 2
        case 0xE0...0xEF: return 3
        case 0xF0...0xF4: return 4
        default: return 1
        }
    }
}

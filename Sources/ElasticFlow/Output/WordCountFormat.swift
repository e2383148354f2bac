internal import CElasticFlow

/// How a word count is printed.
public enum WordCountFormat: String, CaseIterable, Sendable {
    /// `word count` per line, a single space between.
    case text
    /// `word<TAB>count` per line (words never hold a tab, so the split is unambiguous).
    case tsv
    /// A JSON array of `{"word": …, "count": …}` objects; a word whose bytes are not valid UTF-8
    /// also carries `"hex"`, its exact bytes, since JSON strings cannot hold them.
    case json
}

extension WordCounter {
    /// Writes the sorted counts (count descending, then word ascending bytewise), the exact bytes
    /// of each word, to a file descriptor.
    /// - Parameters:
    ///   - format: text, tsv or json.
    ///   - limit: only the first `limit` words (all when nil).
    ///   - fd: an open file descriptor; it is written to, never closed.
    /// - Throws: `ElasticFlowError.io` when a write fails.
    public func write(format: WordCountFormat, limit: Int? = nil, toFileDescriptor fd: Int32) throws(ElasticFlowError) {
        var writer = ByteWriter(fileDescriptor: fd)
        try write(format: format, limit: limit, into: &writer)
        try writer.flush()
    }

    /// The sorted counts rendered in memory (tests and small outputs).
    public func rendered(format: WordCountFormat, limit: Int? = nil) throws(ElasticFlowError) -> [UInt8] {
        var writer = ByteWriter()
        try write(format: format, limit: limit, into: &writer)
        return writer.bytes
    }

    /// Renders the entries into `writer` a buffer at a time, under the counter's lock, and writes
    /// each buffer out with the lock released (never holding it across the write).
    private func write(format: WordCountFormat, limit: Int?, into writer: inout ByteWriter) throws(ElasticFlowError) {
        if format == .json { writer.append("[") }
        try withSortedEntries(limit: limit) { (entries, start) throws(ElasticFlowError) -> Int in
            var index = start
            while index < entries.count && !writer.isFull {
                Self.render(entries[index], first: index == 0, format: format, into: &writer)
                index += 1
            }
            if index == entries.count && format == .json { writer.append(entries.isEmpty ? "]\n" : "\n]\n") }
            return index
        } unlocked: { () throws(ElasticFlowError) in
            try writer.flush()
        }
    }

    private static func render(
        _ entry: ef_word_count, first: Bool, format: WordCountFormat, into writer: inout ByteWriter
    ) {
        let word = UnsafeBufferPointer(start: entry.word.ptr, count: entry.word.len)
        switch format {
        case .text, .tsv:
            writer.append(word)
            writer.append(format == .text ? 0x20 : 0x09)
            writer.append(decimal: entry.count)
            writer.append(0x0A)
        case .json:
            writer.append(first ? "\n{\"word\":\"" : ",\n{\"word\":\"")
            let valid = appendJSONString(word, to: &writer)
            writer.append("\",\"count\":")
            writer.append(decimal: entry.count)
            if !valid {
                writer.append(",\"hex\":\"")
                for byte in word {
                    writer.append(hexDigit(byte >> 4))
                    writer.append(hexDigit(byte & 0xF))
                }
                writer.append("\"")
            }
            writer.append("}")
        }
    }
}

private func hexDigit(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
}

/// Appends the word as JSON string content; returns false when the bytes were not valid UTF-8
/// (invalid sequences are then written as U+FFFD).
private func appendJSONString(_ word: UnsafeBufferPointer<UInt8>, to writer: inout ByteWriter) -> Bool {
    var valid = true
    var scalars = word.makeIterator()
    var decoder = UTF8()
    loop: while true {
        switch decoder.decode(&scalars) {
        case .scalarValue(let scalar):
            switch scalar.value {
            case 0x22: writer.append("\\\"")
            case 0x5C: writer.append("\\\\")
            case 0x08: writer.append("\\b")
            case 0x0C: writer.append("\\f")
            case 0x0A: writer.append("\\n")
            case 0x0D: writer.append("\\r")
            case 0x09: writer.append("\\t")
            case 0..<0x20, 0x7F:
                writer.append("\\u00")
                writer.append(hexDigit(UInt8(scalar.value >> 4)))
                writer.append(hexDigit(UInt8(scalar.value & 0xF)))
            default:
                for byte in UTF8.encode(scalar)! { writer.append(byte) }
            }
        case .emptyInput:
            break loop
        case .error:
            valid = false
            writer.append(0xEF)
            writer.append(0xBF)
            writer.append(0xBD)
        }
    }
    return valid
}

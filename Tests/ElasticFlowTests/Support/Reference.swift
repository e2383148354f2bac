import Foundation

/// The trivially-correct word count every result is compared with: split on the six ASCII
/// whitespace bytes, fold A-Z if asked, count in a dictionary, sort by count desc then bytes asc.
enum Reference {
    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (0x09...0x0D).contains(byte)
    }

    static func counts(_ data: [UInt8], lowercase: Bool) -> [([UInt8], UInt64)] {
        var table: [[UInt8]: UInt64] = [:]
        var word: [UInt8] = []
        for byte in data {
            if isSpace(byte) {
                if !word.isEmpty { table[word, default: 0] += 1 }
                word.removeAll(keepingCapacity: true)
            } else {
                word.append(lowercase && (0x41...0x5A).contains(byte) ? byte + 32 : byte)
            }
        }
        if !word.isEmpty { table[word, default: 0] += 1 }
        return table.sorted { a, b in
            a.value != b.value ? a.value > b.value : a.key.lexicographicallyPrecedes(b.key)
        }.map { ($0.key, $0.value) }
    }

    /// The `elasticflow count` text output for data.
    static func text(_ data: [UInt8], lowercase: Bool, top: Int? = nil) -> [UInt8] {
        var output: [UInt8] = []
        for (word, count) in counts(data, lowercase: lowercase).prefix(top ?? Int.max) {
            output += word
            output.append(0x20)
            output += Array(String(count).utf8)
            output.append(0x0A)
        }
        return output
    }
}

/// Random bytes rich in what the tokenizer must get right: every whitespace kind, capitals, NUL,
/// bytes above 0x7F and invalid UTF-8, in words of varied length.
struct RandomText {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        let alphabet: [UInt8] =
            Array("aAbBcCxyzZ".utf8) + [0x00, 0x80, 0xC3, 0xA9, 0xFF, 0x20, 0x20, 0x0A, 0x09, 0x0B, 0x0C, 0x0D]
        return (0..<count).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] }
    }
}

/// A fresh directory under the system's temporary folder, removed when the test is done.
final class TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("elasticflow-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = url.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// A seeded generator of English-like text for tests, benchmarks and `make run`: the same seed
/// gives the same bytes on every machine. Words follow a Zipf-like law over a vocabulary built from
/// syllables, some capitalised, with punctuation attached and lines wrapped near 70 columns, so the
/// text exercises lowercasing, long tails of rare words and line cutting.
public struct CorpusGenerator: Sendable {
    private var state: UInt64
    private let vocabulary: [[UInt8]]
    private let cumulative: [Double]

    /// - Parameters:
    ///   - seed: the same seed gives the same text on every machine.
    ///   - vocabularySize: distinct words to draw from (Zipf-like: a few frequent, a long tail of rare).
    public init(seed: UInt64, vocabularySize: Int = 20_000) {
        state = seed &+ 0x9E37_79B9_7F4A_7C15
        let syllables = [
            "the", "and", "of", "to", "in", "he", "is", "that", "for", "it", "was", "on", "ra", "ke", "lo", "mi",
            "sa", "to", "ver", "an", "el", "or", "di", "un", "ta", "bel", "gor", "ith", "on", "ar", "es", "im",
        ].map { Array($0.utf8) }
        var generatorState = seed ^ 0xD1B5_4A32_D192_ED03
        // The most frequent ranks are real short words, as in English text.
        let common = [
            "the", "and", "of", "to", "in", "that", "he", "it", "was", "for", "is", "his", "with", "be", "as", "not",
            "they", "shall", "him", "all", "unto", "i", "a", "my", "her", "them", "have", "from", "by", "we", "thou",
            "which", "said", "on", "were", "their", "when", "but", "this", "at", "there", "one", "thy", "then",
        ]
        var words: [[UInt8]] = common.prefix(vocabularySize).map { Array($0.utf8) }
        var seen = Set<[UInt8]>(words)
        while words.count < vocabularySize {
            let length = 1 + Int(Self.next(&generatorState) % 4)
            var word: [UInt8] = []
            for _ in 0..<length { word += syllables[Int(Self.next(&generatorState) % UInt64(syllables.count))] }
            if seen.insert(word).inserted { words.append(word) }
        }
        vocabulary = words
        var sum = 0.0
        cumulative = (1...vocabularySize).map { rank in
            sum += 1.0 / Double(rank)
            return sum
        }
    }

    private static func next(_ state: inout UInt64) -> UInt64 {
        // splitmix64: tiny, fast, and identical everywhere.
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private mutating func nextWord() -> [UInt8] {
        let target = Double(Self.next(&state) >> 11) / Double(1 << 53) * cumulative[cumulative.count - 1]
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] < target { low = middle + 1 } else { high = middle }
        }
        var word = vocabulary[low]
        let roll = Self.next(&state) % 100
        if roll < 8 { word[0] = word[0] &- 32 }  // Capitalised
        if roll == 8 { word = word.map { $0 &- 32 } }  // SHOUTED
        switch Self.next(&state) % 40 {
        case 0: word.append(UInt8(ascii: ","))
        case 1: word.append(UInt8(ascii: "."))
        case 2: word.append(UInt8(ascii: ";"))
        default: break
        }
        return word
    }

    /// Appends about `byteCount` bytes of text (whole lines, each ending in a newline).
    public mutating func generate(byteCount: Int) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(byteCount + 128)
        var column = 0
        while output.count < byteCount {
            let word = nextWord()
            if column > 0 && column + 1 + word.count > 70 {
                output.append(UInt8(ascii: "\n"))
                column = 0
            } else if column > 0 {
                output.append(UInt8(ascii: " "))
                column += 1
            }
            output += word
            column += word.count
        }
        output.append(UInt8(ascii: "\n"))
        return output
    }
}

import Testing

@testable import ElasticFlow

/// A seeded generator for shuffles and random values (splitmix64, via `RandomText`).
struct SeededGenerator: RandomNumberGenerator {
    var random: RandomText

    init(seed: UInt64) { random = RandomText(state: seed) }

    mutating func next() -> UInt64 { random.next() }
}

/// Random nested values covering every case, including awkward numbers and strings.
enum RandomFlowValue {
    static func make(_ generator: inout SeededGenerator, depth: Int = 0) -> FlowValue {
        let kinds = depth >= 4 ? 6 : 8
        switch Int.random(in: 0..<kinds, using: &generator) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &generator))
        case 2:
            let special: [Int64] = [0, 1, -1, 63, 64, -64, -65, .max, .min, 1 << 35]
            return .int(
                Bool.random(using: &generator)
                    ? special.randomElement(using: &generator)!
                    : Int64(bitPattern: generator.next()) >> Int64.random(in: 0..<63, using: &generator))
        case 3:
            var value: Double
            repeat { value = Double(bitPattern: generator.next()) } while value.isNaN
            let special: [Double] = [0, -0.0, 1.5, -2.25, .infinity, -.infinity, .ulpOfOne, .greatestFiniteMagnitude]
            return .double(Bool.random(using: &generator) ? special.randomElement(using: &generator)! : value)
        case 4: return .string(string(&generator))
        case 5:
            return .bytes(
                (0..<Int.random(in: 0..<20, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator)
                })
        case 6:
            return .array(
                (0..<Int.random(in: 0..<5, using: &generator)).map { _ in make(&generator, depth: depth + 1) })
        default:
            var entries: [String: FlowValue] = [:]
            for _ in 0..<Int.random(in: 0..<5, using: &generator) {
                entries[string(&generator)] = make(&generator, depth: depth + 1)
            }
            return .dictionary(entries)
        }
    }

    static func string(_ generator: inout SeededGenerator) -> String {
        let pieces = ["a", "b", "z", "é", "日本", "🙂", "", " ", "\n", "\"", "\\", "\u{1}", "key"]
        return (0..<Int.random(in: 0..<4, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }
            .joined()
    }
}

@Suite struct FlowValueTests {
    @Test func literalsMakeTheExpectedCases() {
        let value: FlowValue = ["a": 1, "b": [true, nil, 2.5, "x"], "c": [:]]
        #expect(
            value
                == .dictionary([
                    "a": .int(1), "b": .array([.bool(true), .null, .double(2.5), .string("x")]),
                    "c": .dictionary([:]),
                ]))
        #expect(value["b"]?[0] == .bool(true))
        #expect(value["b"]?[9] == nil)
        #expect(value["a"]?.intValue == 1)
        #expect(value["missing"] == nil)
        #expect(value.nestingDepth == 2)
        #expect(FlowValue(["k": [1, 2]]) == ["k": [1, 2]])
        #expect(FlowValue(Optional<Int>.none) == .null)
        #expect(FlowValue("s" as Substring) == "s")
        #expect(FlowValue.int(3).numberValue == 3.0)
    }

    @Test func encodesTheDocumentedBytes() {
        #expect(FlowValue.null.encoded() == [0xEF, 0x01, 0x00])
        #expect(FlowValue.int(0).encoded() == [0xEF, 0x01, 0x03, 0x00])
        #expect(FlowValue.int(-1).encoded() == [0xEF, 0x01, 0x03, 0x01])
        #expect(FlowValue.int(64).encoded() == [0xEF, 0x01, 0x03, 0x80, 0x01])
        #expect(FlowValue.double(1.0).encoded() == [0xEF, 0x01, 0x04, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F])
        #expect(
            (["b": 1, "a": true] as FlowValue).encoded()
                == [0xEF, 0x01, 0x08, 0x02, 0x01, 0x61, 0x02, 0x01, 0x62, 0x03, 0x02])
        #expect(FlowValue.bytes([9]).encoded() == [0xEF, 0x01, 0x06, 0x01, 0x09])
    }

    @Test func roundTripsRandomNestedValues() throws {
        var generator = SeededGenerator(seed: 1)
        for _ in 0..<2_000 {
            let value = RandomFlowValue.make(&generator)
            let bytes = value.encoded()
            let decoded = try FlowValue(decoding: bytes)
            #expect(decoded == value)
            #expect(decoded.encoded() == bytes)
        }
    }

    @Test func equalValuesEncodeEquallyWhateverTheInsertionOrder() {
        var generator = SeededGenerator(seed: 2)
        var keys = (0..<200).map { "key\($0)" } + ["", "é", "Z", "a", "aa"]
        var first: [String: FlowValue] = [:]
        for key in keys { first[key] = .int(Int64(key.utf8.count)) }
        keys.shuffle(using: &generator)
        var second: [String: FlowValue] = [:]
        second.reserveCapacity(1_000)  // a different capacity gives a different iteration order
        for key in keys { second[key] = .int(Int64(key.utf8.count)) }
        #expect(FlowValue.dictionary(first).encoded() == FlowValue.dictionary(second).encoded())
        #expect(FlowValue.dictionary(first).description == FlowValue.dictionary(second).description)
    }

    @Test func keepsExactIntegerAndDoubleBits() throws {
        for value in [Int64.min, .min + 1, -1, 0, 1, .max] {
            #expect(try FlowValue(decoding: FlowValue.int(value).encoded()) == .int(value))
        }
        let nan = Double(bitPattern: 0x7FF8_0000_DEAD_BEEF)
        for value in [-0.0, nan, .infinity, -.infinity, .leastNonzeroMagnitude] {
            let decoded = try FlowValue(decoding: FlowValue.double(value).encoded())
            #expect(decoded.doubleValue?.bitPattern == value.bitPattern)
        }
    }

    @Test func rejectsEveryTruncation() {
        var generator = SeededGenerator(seed: 3)
        for _ in 0..<300 {
            let bytes = RandomFlowValue.make(&generator).encoded()
            for length in 0..<bytes.count {
                #expect(throws: ElasticFlowError.self) { try FlowValue(decoding: Array(bytes[0..<length])) }
            }
        }
    }

    @Test func neverCrashesOnRandomCorruptionAndAcceptsOnlyCanonicalEncodings() {
        var generator = SeededGenerator(seed: 4)
        var accepted = 0
        for _ in 0..<20_000 {
            var bytes = RandomFlowValue.make(&generator).encoded()
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let index = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<4, using: &generator) {
                case 0: bytes[index] ^= 1 << UInt8.random(in: 0..<8, using: &generator)
                case 1: bytes[index] = UInt8.random(in: 0...255, using: &generator)
                case 2: bytes.insert(UInt8.random(in: 0...255, using: &generator), at: index)
                default: if bytes.count > 1 { bytes.remove(at: index) }
                }
            }
            if let value = try? FlowValue(decoding: bytes) {
                accepted += 1
                #expect(value.encoded() == bytes)
            }
        }
        // Some corruptions (a flipped bit in an int or a string) stay valid; most do not.
        #expect(accepted > 0 && accepted < 20_000)
        // Pure noise too.
        for _ in 0..<20_000 {
            let noise =
                [0xEF, 0x01]
                + (0..<Int.random(in: 0..<40, using: &generator)).map { _ in
                    UInt8.random(in: 0...255, using: &generator)
                }
            if let value = try? FlowValue(decoding: noise) { #expect(value.encoded() == noise) }
        }
    }

    @Test func rejectsHostileCountsAndDepthBeforeAllocating() throws {
        let hugeCount: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]
        for tag: UInt8 in [5, 6, 7, 8] {
            #expect(throws: ElasticFlowError.self) { try FlowValue(decoding: [0xEF, 0x01, tag] + hugeCount) }
        }
        // A count just above what the remaining bytes could hold.
        #expect(throws: ElasticFlowError.self) { try FlowValue(decoding: [0xEF, 0x01, 0x07, 0x03, 0x00, 0x00]) }
        #expect(throws: ElasticFlowError.self) { try FlowValue(decoding: [0xEF, 0x01, 0x08, 0x02, 0x00, 0x00]) }

        var deep = FlowValue.null
        for _ in 0..<FlowValue.maximumNestingDepth { deep = [deep] }
        #expect(try FlowValue(decoding: deep.encoded()) == deep)
        let tooDeep: FlowValue = ["k": deep]
        #expect(tooDeep.nestingDepth == FlowValue.maximumNestingDepth + 1)
        #expect(throws: ElasticFlowError.self) { try FlowValue(decoding: tooDeep.encoded()) }
        // A million nested arrays: rejected at the limit, not by exhausting the stack.
        let bomb: [UInt8] = [0xEF, 0x01] + (0..<2_000_000).map { $0 % 2 == 0 ? 0x07 : 0x01 }
        #expect(throws: ElasticFlowError.self) { try FlowValue(decoding: bomb) }
    }

    @Test func rejectsNonCanonicalForms() {
        let cases: [(String, [UInt8])] = [
            ("bad magic", [0xEE, 0x01, 0x00]),
            ("unknown version", [0xEF, 0x02, 0x00]),
            ("unknown tag", [0xEF, 0x01, 0x09]),
            ("trailing bytes", [0xEF, 0x01, 0x00, 0x00]),
            ("non-minimal varint", [0xEF, 0x01, 0x03, 0x80, 0x00]),
            ("varint over 64 bits", [0xEF, 0x01, 0x03] + [UInt8](repeating: 0xFF, count: 9) + [0x02]),
            ("varint over 10 bytes", [0xEF, 0x01, 0x03] + [UInt8](repeating: 0x80, count: 10) + [0x01]),
            ("invalid UTF-8", [0xEF, 0x01, 0x05, 0x02, 0xC3, 0x28]),
            ("unsorted keys", [0xEF, 0x01, 0x08, 0x02, 0x01, 0x62, 0x00, 0x01, 0x61, 0x00]),
            ("duplicate keys", [0xEF, 0x01, 0x08, 0x02, 0x01, 0x61, 0x00, 0x01, 0x61, 0x00]),
            // "é" precomposed and decomposed: distinct bytes, one Swift key.
            (
                "equivalent keys",
                [0xEF, 0x01, 0x08, 0x02, 0x03, 0x65, 0xCC, 0x81, 0x00, 0x02, 0xC3, 0xA9, 0x00]
            ),
        ]
        for (name, bytes) in cases {
            #expect(throws: ElasticFlowError.self, "\(name)") { try FlowValue(decoding: bytes) }
        }
        do {
            _ = try FlowValue(decoding: [0xEF, 0x01, 0x09])
        } catch {
            #expect(error.description.contains("unknown tag 9"))
        }
        // The largest 10-byte varint is fine.
        #expect(
            (try? FlowValue(decoding: [0xEF, 0x01, 0x03] + [UInt8](repeating: 0xFF, count: 9) + [0x01]))
                == .int(.min))
    }

    @Test func describesDeterministically() {
        let value: FlowValue = [
            "b": [1, 2.5, "q\"\n\u{1}"], "a": .bytes([0x0A, 0xFF]),
            "c": [true, nil, .double(.nan), .double(-.infinity)],
        ]
        #expect(value.description == #"{"a": <0aff>, "b": [1, 2.5, "q\"\n\u0001"], "c": [true, null, nan, -inf]}"#)
    }
}

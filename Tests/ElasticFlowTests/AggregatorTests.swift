import Testing

@testable import ElasticFlow

@Suite struct AggregatorTests {
    let aggregator = DefaultAggregator()

    func fold(_ aggregator: some Aggregator, _ values: [FlowValue]) throws -> FlowValue? {
        try aggregator.aggregate(values)
    }

    @Test func defaultFirstValueIsKeptAsIs() throws {
        #expect(try aggregator.aggregate(nil, ["a": 1]) == ["a": 1])
        #expect(try fold(aggregator, []) == nil)
    }

    @Test func defaultSumsNumbers() throws {
        #expect(try fold(aggregator, [1, 2, 39]) == 42)
        #expect(try fold(aggregator, [1.5, 2.25]) == 3.75)
        #expect(try fold(aggregator, [1, 0.5]) == 1.5)
        #expect(try fold(aggregator, [0.5, 1]) == 1.5)
        #expect(throws: ElasticFlowError.self) { try fold(aggregator, [.int(.max), 1]) }
        #expect(try fold(aggregator, [.int(.max), -1, 1]) == .int(.max))
    }

    @Test func defaultConcatenatesStringsBytesAndArrays() throws {
        #expect(try fold(aggregator, ["ab", "c", ""]) == "abc")
        #expect(try fold(aggregator, [.bytes([1]), .bytes([2, 3])]) == .bytes([1, 2, 3]))
        #expect(try fold(aggregator, [[1], [2, "x"], []]) == [1, 2, "x"])
    }

    @Test func defaultMergesDictionariesPerKeyRecursively() throws {
        let a: FlowValue = ["n": 1, "d": 1.0, "s": "x", "list": [1], "inner": ["k": 1, "only-a": true], "a": 0]
        let b: FlowValue = ["n": 2, "d": 1, "s": "y", "list": [2], "inner": ["k": 10, "only-b": nil], "b": 0]
        let merged = try aggregator.aggregate(a, b)
        #expect(
            merged
                == [
                    "n": 3, "d": 2.0, "s": "xy", "list": [1, 2], "inner": ["k": 11, "only-a": true, "only-b": nil],
                    "a": 0, "b": 0,
                ])
        // The smaller-into-larger fast path keeps the order of the operands.
        let small: FlowValue = ["s": "x"]
        let large: FlowValue = ["s": "y", "t": 1, "u": 2]
        #expect(try aggregator.aggregate(small, large)["s"] == "xy")
        #expect(try aggregator.aggregate(large, small)["s"] == "yx")
    }

    @Test func defaultKeepsTheLatestOtherwiseAndIgnoresNull() throws {
        #expect(try fold(aggregator, [1, "x"]) == "x")
        #expect(try fold(aggregator, ["x", [1]]) == [1])
        #expect(try fold(aggregator, [true, false]) == false)
        #expect(try fold(aggregator, [["k": 1], ["k": "v"]]) == ["k": "v"])
        #expect(try fold(aggregator, [["k": 1], 3]) == 3)
        #expect(try fold(aggregator, [.null, 3, .null]) == 3)
        #expect(try fold(aggregator, [["k": 1], ["k": nil]]) == ["k": 1])
    }

    @Test func namedAggregators() throws {
        #expect(try fold(.sum, [1, 2, .null, 3]) == 6)
        #expect(try fold(.sum, [1, 2.5]) == 3.5)
        #expect(throws: ElasticFlowError.self) { try fold(.sum, [1, "x"]) }
        #expect(throws: ElasticFlowError.self) { try fold(.sum, [.int(.min), -1]) }

        #expect(try fold(.latest, [1, "x", [2]]) == [2])

        #expect(try fold(.max, [3, 7.5, -2, .null]) == 7.5)
        #expect(try fold(.min, [3, 7.5, -2, .null]) == -2)
        #expect(try fold(.max, ["b", "ab", "é"]) == "é")
        #expect(try fold(.min, [.bytes([2]), .bytes([1, 9])]) == .bytes([1, 9]))
        #expect(throws: ElasticFlowError.self) { try fold(.max, [1, "x"]) }
        // Exact comparison of a large int with a double.
        #expect(try fold(.max, [.int(.max), .double(9.2e18)]) == .int(.max))
        #expect(try fold(.max, [.int(1), .double(1.5)]) == 1.5)

        #expect(try fold(.concatenate, ["a", .null, "b"]) == "ab")
        #expect(try fold(.concatenate, [[1], 2, [3]]) == [1, 2, 3])
        #expect(throws: ElasticFlowError.self) { try fold(.concatenate, [1, 2]) }

        #expect(try fold(.default, [1, 2]) == 3)
    }

    @Test func customAggregatorRunsItsClosure() throws {
        let product = CustomAggregator(name: "product") { accumulated, next in
            guard let accumulated else { return next }
            guard let a = accumulated.intValue, let b = next.intValue else {
                throw ElasticFlowError.invalidArgument("product of non-integers")
            }
            return .int(a * b)
        }
        #expect(product.name == "product")
        #expect(try fold(product, [2, 3, 7]) == 42)
        #expect(throws: ElasticFlowError.self) { try fold(product, [2, "x"]) }
        #expect(product.description == "CustomAggregator(product)")
    }

    @Test func comparesValues() throws {
        #expect(try FlowValue.compare(1, 2) < 0)
        #expect(try FlowValue.compare(2.0, 2) == 0)
        #expect(try FlowValue.compare(.int(.min), .double(-.infinity)) > 0)
        #expect(try FlowValue.compare(.double(.nan), .int(.max)) > 0)
        #expect(try FlowValue.compare("a", "ab") < 0)
        #expect(try FlowValue.compare("Z", "a") < 0)
        #expect(throws: ElasticFlowError.self) { try FlowValue.compare(nil, 1) }
    }

    @Test func sumsPerKeyIndependentlyOfArrivalOrder() throws {
        var generator = SeededGenerator(seed: 9)
        var results: [FlowValue] = []
        for _ in 0..<50 {
            var counts: [String: FlowValue] = [:]
            for _ in 0..<30 {
                let key = "w\(Int.random(in: 0..<40, using: &generator))"
                counts[key] =
                    Bool.random(using: &generator) ? .int(Int64.random(in: 1...9, using: &generator)) : .double(0.5)
            }
            results.append(.dictionary(counts))
        }
        let inOrder = try fold(aggregator, results)
        for _ in 0..<5 {
            #expect(try fold(aggregator, results.shuffled(using: &generator)) == inOrder)
        }
    }
}

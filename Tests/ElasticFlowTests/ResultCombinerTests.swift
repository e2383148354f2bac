import Testing

@testable import ElasticFlow

/// When a worker's batch of results leaves: full, past its bytes, as the worker's threads run
/// short of parcels, or once it waited `maxDelay`; and that a combined batch adds up.
@Suite struct ResultCombinerTests {
    let task = WordCountTask()

    func result(_ text: String) throws -> [UInt8] {
        try Array(text.utf8).withUnsafeBytes { try task.process(ParcelBytes($0), options: TaskOptions()) }
    }

    func entry(_ sequence: UInt64) -> ResultEnvelope.Entry { .init(sequence: sequence, processed: nil) }

    @Test func aBatchLeavesWhenFullOrWhenThreadsRunShortAndAddsUp() throws {
        let combiner = ResultCombiner(
            settings: CombineSettings(maxReceipts: 3, maxDelay: .seconds(60)), threads: 2, task: task,
            options: TaskOptions())
        for _ in 0..<6 { combiner.accepted() }
        // 6 outstanding, 2 threads: the first two results wait, the third fills the batch.
        #expect(try combiner.add(entry(1), result: result("a b"), flush: false) == nil)
        #expect(try combiner.add(entry(2), result: result("b c"), flush: false) == nil)
        guard let full = try combiner.add(entry(3), result: result("c d"), flush: false) else {
            Issue.record("a full batch did not leave")
            return
        }
        #expect(full.entries.map(\.sequence) == [1, 2, 3])
        guard case .combined(_, let aggregation) = full else {
            Issue.record("three results were not combined")
            return
        }
        let check = try WordCounter()
        try check.merge(serialized: try aggregation.snapshot())
        #expect(check.count(of: "b") == 2 && check.count(of: "c") == 2 && check.count(of: "a") == 1)
        // 3 left: the next result waits; then only 1 is left (fewer than the threads): it leaves.
        #expect(try combiner.add(entry(4), result: result("e"), flush: false) == nil)
        guard let short = try combiner.add(entry(5), result: result("f"), flush: false) else {
            Issue.record("a batch did not leave as the threads ran short")
            return
        }
        #expect(short.entries.map(\.sequence) == [4, 5])
        // The last one alone is sent as a single result, not a snapshot.
        guard case .single(let last, _) = try combiner.add(entry(6), result: result("g"), flush: false) else {
            Issue.record("the last result did not leave alone")
            return
        }
        #expect(last.sequence == 6)
    }

    @Test func aWaitingBatchLeavesAfterMaxDelayAndAnErrorStillCountsAsFinished() throws {
        let combiner = ResultCombiner(
            settings: CombineSettings(maxReceipts: 16, maxDelay: .milliseconds(50)), threads: 1, task: task,
            options: TaskOptions())
        for _ in 0..<3 { combiner.accepted() }
        #expect(try combiner.add(entry(1), result: result("x"), flush: false) == nil)
        #expect(combiner.takeExpired(now: monotonicSeconds()) == nil, "not yet")
        let expired = combiner.takeExpired(now: monotonicSeconds() + 0.06)
        #expect(expired?.entries.map(\.sequence) == [1])
        #expect(combiner.takeExpired(now: monotonicSeconds() + 1) == nil, "nothing left")
        // A parcel that failed: answered alone; the one still pending leaves once none is left.
        #expect(try combiner.add(entry(2), result: result("y"), flush: false) == nil)
        #expect(combiner.finishedAlone()?.entries.map(\.sequence) == [2])
    }
}

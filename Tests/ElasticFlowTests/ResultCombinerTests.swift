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
        #expect(combiner.takeExpired(now: monotonicSeconds()).isEmpty, "not yet")
        let expired = combiner.takeExpired(now: monotonicSeconds() + 0.06)
        #expect(expired.map(\.entries).map { $0.map(\.sequence) } == [[1]])
        #expect(combiner.takeExpired(now: monotonicSeconds() + 1).isEmpty, "nothing left")
        // A parcel that failed: answered alone; the one still pending leaves once none is left.
        #expect(try combiner.add(entry(2), result: result("y"), flush: false) == nil)
        #expect(combiner.finishedAlone().map(\.entries).map { $0.map(\.sequence) } == [[2]])
    }

    /// The word count's parcels go straight into one table per thread (`checkOut`, `checkIn`):
    /// a batch is one table, which leaves full, as the threads run short, or after `maxDelay`;
    /// two threads hold two tables at once; and what leaves adds up to the parcels it lists.
    @Test func accumulatedParcelsLeaveAsOneTableEachAndAddUp() throws {
        let combiner = ResultCombiner(
            settings: CombineSettings(maxReceipts: 3, maxDelay: .milliseconds(50)), threads: 2, task: task,
            options: TaskOptions())
        #expect(combiner.accumulating != nil)
        func add(_ text: String, to accumulation: ResultCombiner.Accumulation) throws {
            try Array(text.utf8).withUnsafeBytes { try accumulation.accumulator.add(ParcelBytes($0)) }
        }
        func counts(_ batch: ResultCombiner.Batch) throws -> WordCounter {
            guard case .accumulated(_, let accumulator) = batch else {
                Issue.record("not an accumulated batch: \(batch)")
                return try WordCounter()
            }
            let check = try WordCounter()
            try check.merge(serialized: try accumulator.serialized())
            return check
        }
        for _ in 0..<7 { combiner.accepted() }
        // Two threads at once: two tables.
        let one = try combiner.checkOut()
        let two = try combiner.checkOut()
        #expect(one !== two && one.accumulator !== two.accumulator)
        try add("a b", to: one)
        try add("b c", to: two)
        #expect(combiner.checkIn(one, entry: entry(1), parcelBytes: 3, flush: false).isEmpty)
        #expect(combiner.checkIn(two, entry: entry(2), parcelBytes: 3, flush: false).isEmpty)
        // The next parcel goes into the table that waited longest; the third fills it.
        let again = try combiner.checkOut()
        #expect(again === one)
        try add("a", to: again)
        #expect(combiner.checkIn(again, entry: entry(3), parcelBytes: 1, flush: false).isEmpty)
        let full = try combiner.checkOut()
        #expect(full === two)
        try add("c c", to: full)
        #expect(combiner.checkIn(full, entry: entry(4), parcelBytes: 3, flush: false).isEmpty)
        let third = try combiner.checkOut()
        #expect(third === one)
        try add("d", to: third)
        let left = combiner.checkIn(third, entry: entry(5), parcelBytes: 1, flush: false)
        #expect(left.map(\.entries).map { $0.map(\.sequence) } == [[1, 3, 5]])
        let table = try counts(left[0])
        #expect(table.count(of: "a") == 2 && table.count(of: "b") == 1 && table.count(of: "d") == 1)
        #expect(table.total == 4)
        // Recycled: the next empty table is that one, cleared.
        if case .accumulated(_, let accumulator) = left[0] { combiner.recycle(accumulator) }
        // 2 outstanding, 2 threads: the table of 2 and 4 waits; past maxDelay it leaves.
        #expect(combiner.takeExpired(now: monotonicSeconds()).isEmpty)
        let expired = combiner.takeExpired(now: monotonicSeconds() + 0.06)
        #expect(expired.map(\.entries).map { $0.map(\.sequence) } == [[2, 4]])
        #expect(try counts(expired[0]).count(of: "c") == 3)
        // A table that throws is dropped with the parcels it held: they are answered as failed.
        for _ in 0..<3 { combiner.accepted() }
        let fresh = try combiner.checkOut()
        let empty = try WordCounter().partitionedSize
        #expect(fresh.entries.isEmpty && fresh.accumulator.serializedSize == empty, "recycled, cleared")
        try add("e", to: fresh)
        #expect(combiner.checkIn(fresh, entry: entry(6), parcelBytes: 1, flush: false).isEmpty)
        let failing = try combiner.checkOut()
        #expect(combiner.drop(failing).map(\.sequence) == [6])
        // The failed parcel is answered alone; nothing is left pending.
        #expect(combiner.finishedAlone().isEmpty)
        #expect(combiner.takeExpired(now: monotonicSeconds() + 1).isEmpty)
    }

    /// A batch leaves as soon as its table may pass `byteLimit` (measured only then), and a
    /// flush sends it whatever its size; one parcel's table is that parcel's own result.
    @Test func anAccumulatedBatchLeavesPastItsBytesOrOnAFlush() throws {
        let combiner = ResultCombiner(
            settings: CombineSettings(maxReceipts: 16, maxDelay: .seconds(60)), threads: 1, task: task,
            options: TaskOptions(), byteLimit: 1000)
        for _ in 0..<10 { combiner.accepted() }
        let words = (0..<400).map { "w\($0)" }.joined(separator: " ")
        let big = try combiner.checkOut()
        try Array(words.utf8).withUnsafeBytes { try big.accumulator.add(ParcelBytes($0)) }
        let out = combiner.checkIn(big, entry: entry(1), parcelBytes: words.utf8.count, flush: false)
        #expect(out.map(\.entries).map { $0.map(\.sequence) } == [[1]], "past its bytes")
        if case .accumulated(_, let accumulator) = out.first {
            let (mine, alone) = (try WordCounter(), try WordCounter())
            try mine.merge(serialized: try accumulator.serialized())
            try alone.merge(serialized: try result(words))
            #expect(mine.sorted() == alone.sorted() && mine.distinct == 400)
        } else {
            Issue.record("not accumulated")
        }
        let small = try combiner.checkOut()
        try Array("x".utf8).withUnsafeBytes { try small.accumulator.add(ParcelBytes($0)) }
        #expect(combiner.checkIn(small, entry: entry(2), parcelBytes: 1, flush: true).count == 1, "flushed")
    }
}

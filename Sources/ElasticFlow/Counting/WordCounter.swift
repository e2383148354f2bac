internal import CElasticFlow
import Dispatch
import Foundation
import Synchronization

/// A word and how many times it was seen. Words are the exact bytes read (not necessarily UTF-8).
public struct WordCount: Hashable, Sendable {
    /// The word's exact bytes as read (lowercased only with `lowercase`), never empty.
    public let word: [UInt8]
    /// How many times the word occurred.
    public let count: UInt64

    /// A word and its count, as given.
    public init(word: [UInt8], count: UInt64) {
        self.word = word
        self.count = count
    }

    /// The word decoded as UTF-8, with U+FFFD for invalid sequences.
    public var string: String { String(decoding: word, as: UTF8.self) }
}

/// A hash-partitioned word count table of the C core (`ef_counter`).
///
/// Words are maximal runs of bytes that are not ASCII whitespace; every other byte is kept as is
/// (with `lowercase`, only `A`–`Z` change). A word may straddle two `feed` calls; `finish` ends the
/// stream.
///
/// Thread-safe: every call holds the counter's lock, so a counter may be shared (a `StepReport`
/// is `Sendable`); for speed, count with one counter per thread and merge them at the end. The
/// lock guards this counter alone and is never held across a write:
/// `write(format:limit:toFileDescriptor:)` renders a buffer at a time under it and writes each one
/// with the lock released (a feed, merge or clear from another thread meanwhile fails the write).
public final class WordCounter: @unchecked Sendable {
    let handle: OpaquePointer
    /// Guards every use of `handle` but `mergePartition`'s, whose callers guarantee disjoint
    /// partitions and no other use meanwhile.
    private let lock = NSLock()
    /// Bumped by every call that changes the table (under the lock, but `mergePartition`'s), so a
    /// write that released the lock between two buffers knows whether its sorted views still hold.
    private let changes = Atomic<UInt64>(0)
    /// The word-size cap it was made with (0: none).
    public let maxWordSize: Int

    /// - Parameters:
    ///   - partitions: how many hash partitions (1...1024); merges run per partition, in parallel.
    ///   - lowercase: fold ASCII `A`–`Z` to `a`–`z` while tokenizing.
    ///   - expectedDistinct: a capacity hint; the table grows past it as needed.
    ///   - maxWordSize: the longest word `feed` accepts (`ef_counter_options.max_word`; 0: no cap);
    ///     a longer one throws `.core(.wordTooLong, …)`.
    /// - Throws: `ElasticFlowError.invalidArgument` for a partition count out of range.
    public init(
        partitions: Int = 16, lowercase: Bool = false, expectedDistinct: Int = 0, maxWordSize: Int = 0
    ) throws(ElasticFlowError) {
        guard (1...Int(EF_COUNT_PARTITIONS_MAX)).contains(partitions) else {
            throw .invalidArgument("partitions must be in 1...\(EF_COUNT_PARTITIONS_MAX), not \(partitions)")
        }
        var options = ef_counter_options()
        options.partitions = UInt32(partitions)
        options.flags = lowercase ? UInt32(EF_COUNT_LOWERCASE) : 0
        options.initial_capacity = max(0, expectedDistinct)
        options.max_word = max(0, maxWordSize)
        self.maxWordSize = max(0, maxWordSize)
        guard let handle = ef_counter_create(&options) else {
            throw .core(.outOfMemory, operation: "creating a word counter")
        }
        self.handle = handle
    }

    deinit { ef_counter_free(handle) }

    /// Runs `body`, which only reads the table, holding the lock.
    private func locked<R>(_ body: () -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    /// Runs `body`, which changes the table, holding the lock.
    private func changing<R>(_ body: () -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        changes.add(1, ordering: .relaxed)
        return body()
    }

    /// Number of hash partitions (fixed at creation).
    public var partitions: Int { Int(ef_counter_partitions(handle)) }
    /// Whether ASCII letters are folded to lowercase (fixed at creation).
    public var lowercases: Bool { ef_counter_flags(handle) & UInt32(EF_COUNT_LOWERCASE) != 0 }
    /// Number of distinct words.
    public var distinct: Int { locked { ef_counter_distinct(handle) } }
    /// Sum of all counts (the number of words seen).
    public var total: UInt64 { locked { ef_counter_total(handle) } }

    /// Tokenizes and counts bytes (`ef_counter_feed`).
    public func feed<Bytes: Sequence>(_ bytes: Bytes) throws(ElasticFlowError) where Bytes.Element == UInt8 {
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            changing { ef_counter_feed(handle, buffer.baseAddress, buffer.count) }
        }
        if let result {
            try check(result, "counting words")
        } else {
            let copy = Array(bytes)
            try copy.withUnsafeBufferPointer { (buffer) throws(ElasticFlowError) in
                _ = try check(changing { ef_counter_feed(handle, buffer.baseAddress, buffer.count) }, "counting words")
            }
        }
    }

    /// Counts bytes in memory the caller guarantees stays valid for the call.
    func feed(_ buffer: UnsafeRawBufferPointer) throws(ElasticFlowError) {
        try check(
            changing { ef_counter_feed(handle, buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), buffer.count) },
            "counting words")
    }

    /// Ends the stream: counts a word left pending by the last `feed` (`ef_counter_finish`).
    public func finish() throws(ElasticFlowError) {
        try check(changing { ef_counter_finish(handle) }, "counting words")
    }

    /// Adds `count` to one whole word, taken as is (`ef_counter_add`).
    public func add(_ word: [UInt8], count: UInt64 = 1) throws(ElasticFlowError) {
        try word.withUnsafeBufferPointer { (buffer) throws(ElasticFlowError) in
            _ = try check(changing { ef_counter_add(handle, buffer.baseAddress, buffer.count, count) }, "adding a word")
        }
    }

    /// How many times `word` was counted (0 when absent).
    public func count(of word: [UInt8]) -> UInt64 {
        word.withUnsafeBufferPointer { buffer in locked { ef_counter_get(handle, buffer.baseAddress, buffer.count) } }
    }

    /// How many times `word` (as UTF-8) was counted.
    public func count(of word: String) -> UInt64 { count(of: Array(word.utf8)) }

    /// Adds every count of `other` into this counter (`ef_counter_merge`).
    public func merge(_ other: WordCounter) throws(ElasticFlowError) {
        if other === self {  // every count doubled, from a copy of the table
            try merge(serialized: try serialized())
            return
        }
        // Both locks, always in the same order, so two merges in opposite directions cannot deadlock.
        let (first, second) = ObjectIdentifier(self) < ObjectIdentifier(other) ? (self, other) : (other, self)
        first.lock.lock()
        second.lock.lock()
        defer {
            second.lock.unlock()
            first.lock.unlock()
        }
        changes.add(1, ordering: .relaxed)
        try check(ef_counter_merge(handle, other.handle), "merging word counts")
    }

    /// Merges one partition of `other` into the same partition here (`ef_counter_merge_partition`);
    /// calls for different partitions of one destination may run on different threads at once.
    /// Takes no lock: the caller guarantees that nothing else uses either counter meanwhile.
    /// - Returns: 0 or a negative `EF_E*` code (the caller gathers failures across threads).
    func mergePartition(_ partition: Int, from other: WordCounter) -> Int32 {
        changes.add(1, ordering: .relaxed)
        return ef_counter_merge_partition(handle, other.handle, UInt32(partition))
    }

    /// Forgets every word, keeping the capacity.
    public func removeAll() { changing { ef_counter_clear(handle) } }

    /// The compact serialized form used in RESULT frames (`ef_counter_serialize`).
    public func serialized() throws(ElasticFlowError) -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        let size = ef_counter_serialized_size(handle)
        var output = [UInt8](repeating: 0, count: size)
        let written = output.withUnsafeMutableBufferPointer {
            ef_counter_serialize(handle, $0.baseAddress, $0.count)
        }
        try check(written, "serializing word counts")
        return output
    }

    /// The bytes `serializedPartitioned()` takes now (one pass over the entries).
    var partitionedSize: Int { locked { ef_counter_partitioned_size(handle) } }

    /// The partitioned serialized form (`EFCP`, `ef_counter_serialize_partitioned`): one section
    /// per hash partition, so a receiver can merge the sections on several threads at once.

    public func serializedPartitioned() throws(ElasticFlowError) -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        let size = ef_counter_partitioned_size(handle)
        var output = [UInt8](repeating: 0, count: size)
        let written = output.withUnsafeMutableBufferPointer {
            ef_counter_serialize_partitioned(handle, $0.baseAddress, $0.count)
        }
        try check(written, "serializing word counts")
        return output
    }

    /// Adds a serialized table (`EFCT` or `EFCP`) into this counter, all or nothing. An `EFCP`
    /// table with this counter's partitioning and at least `parallelAbove` bytes is checked, then
    /// merged, section by section on `threads` threads at once (`ef_counter_section_check`,
    /// `ef_counter_section_merge`, which touch disjoint partitions); anything else goes through
    /// `ef_counter_deserialize`.
    /// - Returns: the number of entries read.
    @discardableResult
    func mergeInParallel(serialized bytes: [UInt8], threads: Int, parallelAbove: Int = 256 << 10)
        throws(ElasticFlowError) -> Int
    {
        try bytes.withUnsafeBytes { (buffer) -> Result<Int, ElasticFlowError> in
            Result { () throws(ElasticFlowError) -> Int in
                try mergeInParallel(serialized: buffer, threads: threads, parallelAbove: parallelAbove)
            }
        }.get()
    }

    /// `mergeInParallel` on bytes in place (valid for the call only).
    /// - Parameter total: the table's total (`bounds(ofSerialized:)`) when the caller read it
    ///   already; else it is read here when the sections merge in parallel.
    @discardableResult
    func mergeInParallel(
        serialized buffer: UnsafeRawBufferPointer, threads: Int, parallelAbove: Int = 256 << 10,
        total tableTotal: UInt64? = nil
    ) throws(ElasticFlowError) -> Int {
        let base = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
        var sections: UInt32 = 0
        guard threads > 1, buffer.count >= parallelAbove,
            ef_counter_partitioned_check(base, buffer.count, &sections) >= 0, Int(sections) == partitions
        else { return try merge(serialized: buffer) }
        // Held for the whole merge; the threads below touch disjoint partitions under it.
        lock.lock()
        defer { lock.unlock() }
        changes.add(1, ordering: .relaxed)
        // The sections merge one partition each, so the counter-wide total is checked here, whole.
        let added: UInt64
        if let tableTotal { added = tableTotal } else { added = try Self.bounds(ofSerialized: buffer).total }
        if ef_counter_total(handle).addingReportingOverflow(added).overflow {
            throw .core(.overflow, operation: "merging word counts")
        }
        let transfer = SectionMergeTransfer(counter: self, base: base, count: buffer.count)
        let (partitions, threads) = (partitions, min(threads, partitions))
        let entries = Atomic<Int>(0)
        let failure = Atomic<Int32>(0)
        // Check every section first (nothing changes), so a bad one adds nothing at all.
        for pass in 0..<2 {
            DispatchQueue.concurrentPerform(iterations: threads) { worker in
                for partition in stride(from: worker, to: partitions, by: threads) {
                    let code =
                        pass == 0
                        ? ef_counter_section_check(transfer.base, transfer.count, UInt32(partition))
                        : ef_counter_section_merge(
                            transfer.counter.handle, transfer.base, transfer.count, UInt32(partition))
                    if code < 0 {
                        failure.store(Int32(code), ordering: .relaxed)
                    } else if pass == 1 {
                        entries.add(Int(code), ordering: .relaxed)
                    }
                }
            }
            let code = failure.load(ordering: .relaxed)
            if code < 0 {
                throw .core(CoreErrorCode(rawValue: code), operation: "reading serialized word counts")
            }
        }
        return entries.load(ordering: .relaxed)
    }

    /// What a serialized table holds, read in full without merging it (`ef_counter_table_bounds`).
    struct TableBounds: Equatable {
        /// The sum of its counts.
        var total: UInt64
        var entries: UInt64
        /// Bytes of its longest word.
        var longest: UInt64
    }

    /// - Throws: `.core(.overflow)` when the counts sum past 2^64 - 1, the format's codes else.
    static func bounds(ofSerialized buffer: UnsafeRawBufferPointer) throws(ElasticFlowError) -> TableBounds {
        var bounds = ef_counter_bounds()
        try check(
            ef_counter_table_bounds(buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), buffer.count, &bounds),
            "reading serialized word counts")
        return TableBounds(total: bounds.total, entries: bounds.entries, longest: bounds.longest)
    }

    /// Adds the counts of a serialized table into this counter; on malformed input nothing is
    /// added (`ef_counter_deserialize`).
    /// - Returns: the number of entries read.
    @discardableResult
    public func merge(serialized bytes: [UInt8]) throws(ElasticFlowError) -> Int {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(ElasticFlowError) in try merge(serialized: buffer) }
        }.get()
    }

    @discardableResult
    func merge(serialized buffer: UnsafeRawBufferPointer) throws(ElasticFlowError) -> Int {
        Int(
            try check(
                changing {
                    ef_counter_deserialize(
                        handle, buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), buffer.count)
                },
                "reading serialized word counts"))
    }

    /// Words sorted by count descending, then by bytes ascending.
    /// - Parameter limit: keep only the first `limit` words (all when nil).
    public func sorted(limit: Int? = nil) -> [WordCount] {
        withSortedEntries(limit: limit) { entries in
            entries.map { entry in
                WordCount(
                    word: Array(UnsafeBufferPointer(start: entry.word.ptr, count: entry.word.len)), count: entry.count)
            }
        }
    }

    /// Renders the sorted export (`ef_counter_export`) in steps, holding the lock only while
    /// `render` runs: `render(entries, start)` renders from `start` on into memory and returns
    /// where to go on (`entries.count` when done); `unlocked` runs after each step with the lock
    /// released (the write to a file or pipe, which must not stall the threads that use the
    /// counter). The views hold across steps only while the table is unchanged: a change between
    /// two steps (a feed, merge or clear from another thread) throws before they are read again.
    /// - Throws: what `render` or `unlocked` throw; `.invalidArgument` for a change meanwhile.
    func withSortedEntries(
        limit: Int?, render: (UnsafeBufferPointer<ef_word_count>, Int) throws(ElasticFlowError) -> Int,
        unlocked: () throws(ElasticFlowError) -> Void
    ) throws(ElasticFlowError) {
        lock.lock()
        var holding = true
        defer { if holding { lock.unlock() } }
        let capacity = min(limit ?? Int.max, ef_counter_distinct(handle))
        let storage = UnsafeMutableBufferPointer<ef_word_count>.allocate(capacity: max(capacity, 1))
        defer { storage.deallocate() }
        let written = ef_counter_export(handle, storage.baseAddress, capacity)
        let entries = UnsafeBufferPointer(rebasing: storage[0..<max(0, written)])
        let version = changes.load(ordering: .relaxed)
        var next = 0
        while true {
            next = try render(entries, next)
            lock.unlock()
            holding = false
            try unlocked()
            if next >= entries.count { return }
            lock.lock()
            holding = true
            guard changes.load(ordering: .relaxed) == version else {
                throw .invalidArgument(
                    "the word counts changed while they were written (a feed, merge or clear during the write)")
            }
        }
    }

    /// Runs body over the sorted export, holding the lock; the views are valid only inside body.
    func withSortedEntries<R>(limit: Int?, _ body: (UnsafeBufferPointer<ef_word_count>) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        let capacity = min(limit ?? Int.max, ef_counter_distinct(handle))
        let entries = UnsafeMutableBufferPointer<ef_word_count>.allocate(capacity: max(capacity, 1))
        defer { entries.deallocate() }
        let written = ef_counter_export(handle, entries.baseAddress, capacity)
        return try body(UnsafeBufferPointer(rebasing: entries[0..<max(0, written)]))
    }
}

/// A counter and a serialized table shared by the threads of `mergeInParallel`: each touches only
/// its own partitions of the counter, and the bytes are read-only until they all return.
private struct SectionMergeTransfer: @unchecked Sendable {
    let counter: WordCounter
    let base: UnsafePointer<UInt8>?
    let count: Int
}

/// Lets a counter cross to another thread when the code that does so guarantees, by construction,
/// that only one thread uses it at a time (a per-thread counter handed back after the thread ends,
/// or partition-disjoint merges as `ef_counter_merge_partition` allows).
struct CounterTransfer: @unchecked Sendable {
    let counter: WordCounter
}

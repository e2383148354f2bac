import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Settings of a word count.
public struct WordCountOptions: Hashable, Sendable {
    /// Fold ASCII `A`–`Z` to lowercase.
    public var lowercase = false
    /// Threads that count (default: one per online core).
    public var threads = WordCountOptions.onlineCores
    /// Target parcel size in bytes; parcels end at line boundaries.
    public var parcelSize = 4 << 20
    /// Hash partitions of the count tables (merges run one partition per thread).
    public var partitions = 16
    /// The longest word accepted; a longer one is an error naming the file and offset.
    public var maxWordSize = Limits.defaultMaxWordSize
    /// Whether gzip, zstd, lz4 and bzip2 sources are read as the text they hold (`auto`).
    public var decompression = Decompression.auto

    /// - Parameters:
    ///   - lowercase: fold ASCII `A`–`Z` to lowercase.
    ///   - threads: counting threads; nil: one per online core.
    ///   - parcelSize: target parcel size in bytes; nil: 4 MiB.
    public init(lowercase: Bool = false, threads: Int? = nil, parcelSize: Int? = nil) {
        self.lowercase = lowercase
        if let threads { self.threads = threads }
        if let parcelSize { self.parcelSize = parcelSize }
    }

    /// - Throws: `ElasticFlowError.invalidArgument` naming the first value outside `Limits`.
    public func validate() throws(ElasticFlowError) {
        try Limits.check(threads, in: Limits.threads, "--threads")
        try Limits.check(bytes: parcelSize, in: Limits.parcelSize, "the parcel size (--parcel-size)")
        try Limits.check(bytes: maxWordSize, in: Limits.maxWordSize, "the word-size cap (--max-word-size)")
        try Limits.check(partitions, in: 1...1024, "the partition count")
        try Limits.checkParcelMemory(threads: threads, parcelSize: parcelSize)
    }

    /// Cores this process may run on.
    public static var onlineCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

/// What a finished count processed.
public struct WordCountStatistics: Hashable, Sendable {
    /// Bytes counted (decompressed bytes, for a compressed source).
    public var bytes: UInt64 = 0
    /// Parcels the sources were cut into.
    public var parcels: Int = 0

    static func + (a: WordCountStatistics, b: WordCountStatistics) -> WordCountStatistics {
        WordCountStatistics(bytes: a.bytes + b.bytes, parcels: a.parcels + b.parcels)
    }
}

/// The single-node word count (the embedded default): the same parcels the cluster would make,
/// counted on local threads by the C core, one table per thread, merged partition by partition.
public enum LocalWordCount {
    /// Counts the words of every source.
    /// - Returns: the merged counter and what was processed.
    /// - Throws: `ElasticFlowError` for an unreadable source (before any work) or a read error.
    /// - Parameters:
    ///   - sources: files, standard input or the app's own sources, counted as one text.
    ///   - options: case folding, threads, parcel size and limits (checked before any work).
    ///   - progress: when given, called about five times a second from another thread
    ///     while the sources are counted (for a progress bar).
    public static func run(
        _ sources: [DataSource], options: WordCountOptions = .init(),
        progress: (@Sendable (StepProgress) -> Void)? = nil
    ) throws(ElasticFlowError) -> (WordCounter, WordCountStatistics) {
        try options.validate()
        // Every file is opened once, here, before any work. Large seekable zstd files become
        // parcels of whole frames, decompressed on every thread; small files (half a parcel at
        // most, whose first bytes the check does not read), groups of about a parcel that the
        // threads read at once (a seekable one by its frames); the rest is cut in order.
        let checked = try CheckedSources(
            sources, readingFormats: options.decompression == .auto, minimumSize: UInt64(options.parcelSize / 2 + 1))
        let (seekable, unsplit) = try SeekableParcels.split(checked, parcelSize: options.parcelSize)
        let (packed, rest) = PackedFiles.split(
            unsplit, parcelSize: options.parcelSize, decompression: options.decompression)
        let cutter = try ParcelCutter(
            checked: rest, parcelSize: options.parcelSize, maxWordSize: options.maxWordSize,
            decompression: options.decompression)
        let threads = options.threads
        var counters: [CounterTransfer] = []
        for _ in 0..<threads {
            counters.append(
                CounterTransfer(
                    counter: try WordCounter(
                        partitions: options.partitions, lowercase: options.lowercase,
                        maxWordSize: options.maxWordSize)))
        }
        let shared = SharedParcelCutter(cutter)
        let work = counters
        let stop = DispatchSemaphore(value: 0)
        let stopped = DispatchSemaphore(value: 0)
        if let progress {
            let total = DataSource.totalSize(of: sources, decompression: options.decompression)
            var start = timespec()
            clock_gettime(CLOCK_MONOTONIC, &start)
            let started = start
            DispatchQueue.global().async {
                while stop.wait(timeout: .now() + 0.2) == .timedOut {
                    let statistics = shared.statistics + seekable.statistics + packed.statistics
                    var now = timespec()
                    clock_gettime(CLOCK_MONOTONIC, &now)
                    let seconds = Double(now.tv_sec - started.tv_sec) + Double(now.tv_nsec - started.tv_nsec) / 1e9
                    progress(
                        StepProgress(
                            bytesDone: statistics.bytes, bytesTotal: total, parcelsDone: statistics.parcels,
                            parcelsCut: statistics.parcels, seconds: seconds))
                }
                stopped.signal()
            }
        }
        DispatchQueue.concurrentPerform(iterations: threads) { index in
            seekable.drain(into: work[index].counter, parcelSize: options.parcelSize)
            packed.drain(into: work[index].counter, parcelSize: options.parcelSize)
            shared.drain(into: work[index].counter, parcelSize: options.parcelSize)
        }
        if progress != nil {
            stop.signal()
            stopped.wait()
        }
        if let error = seekable.firstError ?? packed.firstError ?? shared.firstError { throw error }

        let destination = counters[0]
        if threads > 1 {
            // Partitions merge in parallel, each checking only its own total: the whole is checked here.
            var sum: UInt64 = 0
            for counter in work {
                let (next, overflow) = sum.addingReportingOverflow(counter.counter.total)
                if overflow { throw .core(.overflow, operation: "merging word counts") }
                sum = next
            }
            let partitions = destination.counter.partitions
            let failures = Atomic<Int32>(0)
            DispatchQueue.concurrentPerform(iterations: partitions) { partition in
                for other in work.dropFirst() {
                    let code = destination.counter.mergePartition(partition, from: other.counter)
                    if code < 0 { failures.store(code, ordering: .relaxed) }
                }
            }
            let code = failures.load(ordering: .relaxed)
            if code < 0 { throw .core(CoreErrorCode(rawValue: code), operation: "merging word counts") }
        }
        return (destination.counter, shared.statistics + seekable.statistics + packed.statistics)
    }
}

/// A parcel cutter shared by the counting threads: each takes the next parcel under the lock
/// (reading is a short copy from the page cache next to counting) and counts it outside the lock.
final class SharedParcelCutter: @unchecked Sendable {
    // Guarded by `lock`: cutter, statistics, firstError.
    private let lock = Mutex<Void>(())
    private let cutter: ParcelCutter
    private var _statistics = WordCountStatistics()
    private var _error: ElasticFlowError?

    init(_ cutter: ParcelCutter) { self.cutter = cutter }

    var statistics: WordCountStatistics { lock.withLock { _ in _statistics } }
    var firstError: ElasticFlowError? { lock.withLock { _ in _error } }

    private func next(into buffer: ParcelBuffer) -> ParcelOrigin? {
        lock.withLock { _ in
            guard _error == nil else { return nil }
            do throws(ElasticFlowError) {
                guard let origin = try cutter.next(into: buffer) else { return nil }
                _statistics.bytes += UInt64(origin.length)
                _statistics.parcels += 1
                return origin
            } catch {
                _error = error
                return nil
            }
        }
    }

    private func fail(_ error: ElasticFlowError) { lock.withLock { _ in if _error == nil { _error = error } } }

    /// Counts parcels into `counter` until the sources are exhausted or an error occurs.
    func drain(into counter: WordCounter, parcelSize: Int) {
        let buffer = ParcelBuffer(capacity: parcelSize)
        while let origin = next(into: buffer) {
            do throws(ElasticFlowError) {
                try counter.feed(buffer.bytes)
                try counter.finish()
            } catch .core(.wordTooLong, _) {
                fail(
                    .wordTooLong(
                        source: cutter.sources[origin.source].description,
                        through: origin.lastSource > origin.source
                            ? cutter.sources[origin.lastSource].description : nil,
                        offset: origin.offset,
                        cap: counter.maxWordSize))
                return
            } catch {
                fail(error)
                return
            }
        }
    }
}

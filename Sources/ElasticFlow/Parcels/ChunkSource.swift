import Foundation

/// Bytes an app supplies itself — rows from a database, lines it produces, a sequence it already
/// has — distributed like a file: the master cuts them into parcels at line boundaries (copy
/// mode), with receipts, retries and the journal as for files. Give one to a step as
/// `DataSource.custom(_:)`, or register it by name in a `SourceRegistry` for a `StepQueue`.
///
/// The bytes are read by one master thread, in order, a chunk at a time; a chunk may have any
/// size (a record, a block), and words and lines may straddle chunks. Compressed bytes are
/// recognised and decompressed as for files (`--decompress`).
public protocol ChunkSource: Sendable {
    /// Names the source in receipts' errors, in the step record and in a `SourceRegistry`.
    var name: String { get }
    /// Whether `chunks()` can be called again and then yields the same bytes. A journaled step
    /// (a step-data directory) needs it: a resumed or retried step reads the source again from its
    /// first byte, cuts the same parcels and checks each against its journaled receipt (length,
    /// lines, CRC32C), so different bytes fail the step naming the source instead of mixing two
    /// versions. A source that cannot restart is refused for a journaled step.
    var isRestartable: Bool { get }
    /// A new pass over the bytes, from the first. Called once per step (again on a resume).
    func chunks() throws -> any ChunkReader
}

/// One pass over a `ChunkSource`'s bytes, used by one thread at a time.
public protocol ChunkReader {
    /// The next chunk (an empty one is skipped), or nil at the end. An error fails the step with
    /// the source's name and the error's description.
    mutating func next() throws -> [UInt8]?
}

/// A `Sequence` of byte chunks as a source.
public struct SequenceSource<Chunks: Sequence & Sendable>: ChunkSource where Chunks.Element == [UInt8] {
    public let name: String
    public let isRestartable: Bool
    private let sequence: Chunks

    /// - Parameter restartable: whether iterating `chunks` again yields the same bytes (true for
    ///   any `Collection`; a single-pass sequence must say false).
    public init(name: String, restartable: Bool, chunks: Chunks) {
        self.name = name
        isRestartable = restartable
        sequence = chunks
    }

    public func chunks() throws -> any ChunkReader { Reader(iterator: sequence.makeIterator()) }

    struct Reader: ChunkReader {
        var iterator: Chunks.Iterator
        mutating func next() throws -> [UInt8]? { iterator.next() }
    }
}

extension SequenceSource {
    /// A collection of chunks: restartable.
    public init(name: String, chunks: Chunks) where Chunks: Collection {
        self.init(name: name, restartable: true, chunks: chunks)
    }
}

/// Records as lines: each element of a `Sequence` of strings becomes one line (its UTF-8 bytes and
/// a newline), so a Flow task over lines sees one record per line. A record should not hold a
/// newline itself (it would count as two lines). Lines are gathered into chunks of about 64 KiB.
public struct LineSource<Lines: Sequence & Sendable>: ChunkSource where Lines.Element: StringProtocol {
    public let name: String
    public let isRestartable: Bool
    private let lines: Lines

    /// - Parameter restartable: whether iterating `lines` again yields the same records.
    public init(name: String, restartable: Bool, lines: Lines) {
        self.name = name
        isRestartable = restartable
        self.lines = lines
    }

    public func chunks() throws -> any ChunkReader { Reader(iterator: lines.makeIterator()) }

    struct Reader: ChunkReader {
        var iterator: Lines.Iterator
        mutating func next() throws -> [UInt8]? {
            var chunk: [UInt8] = []
            while chunk.count < 64 << 10, let line = iterator.next() {
                chunk.append(contentsOf: line.utf8)
                chunk.append(UInt8(ascii: "\n"))
            }
            return chunk.isEmpty ? nil : chunk
        }
    }
}

extension LineSource {
    /// A collection of records: restartable.
    public init(name: String, lines: Lines) where Lines: Collection {
        self.init(name: name, restartable: true, lines: lines)
    }
}

/// An `AsyncSequence` of byte chunks as a source. The master's cutting thread reads it through a
/// small bounded hand-over (four chunks): a task iterates the sequence and waits while the cutter
/// is behind, so memory stays bounded however fast the sequence produces. The task is cancelled
/// when the step stops reading early (a failure, a cancellation).
public struct AsyncSequenceSource<Chunks: AsyncSequence & Sendable>: ChunkSource where Chunks.Element == [UInt8] {
    public let name: String
    public let isRestartable: Bool
    private let sequence: Chunks

    /// - Parameter restartable: whether iterating `chunks` again yields the same bytes.
    public init(name: String, restartable: Bool, chunks: Chunks) {
        self.name = name
        isRestartable = restartable
        sequence = chunks
    }

    public func chunks() throws -> any ChunkReader {
        let handOver = ChunkHandOver(capacity: 4)
        let sequence = sequence
        // On a thread of its own, not the cooperative pool: the step's threads block on the
        // hand-over, and a caller that blocks pool threads (a synchronous `run` inside a task)
        // must not starve the sequence that feeds it.
        let executor = ThreadTaskExecutor(name: "ef-source")
        let task = Task(executorPreference: executor) {
            defer { executor.stop() }
            do {
                for try await chunk in sequence {
                    guard handOver.put(chunk) else { return }
                }
                handOver.finish(nil)
            } catch {
                handOver.finish(error)
            }
        }
        return AsyncChunkReader(handOver: handOver, task: task)
    }
}

/// A task executor that runs jobs on one thread of its own, until `stop`.
final class ThreadTaskExecutor: TaskExecutor, @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false

    init(name: String) {
        let thread = Thread { [self] in serve() }
        thread.name = name
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the thread end once the jobs queued so far have run.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func serve() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// The cutter's side of an `AsyncSequenceSource`: blocks its (non-async) thread until a chunk or
/// the end arrives.
final class AsyncChunkReader: ChunkReader {
    private let handOver: ChunkHandOver
    private let task: Task<Void, Never>

    init(handOver: ChunkHandOver, task: Task<Void, Never>) {
        self.handOver = handOver
        self.task = task
    }

    deinit {
        handOver.close()
        task.cancel()
    }

    func next() throws -> [UInt8]? { try handOver.take() }
}

/// A bounded queue of chunks from one producing task to one consuming thread.
final class ChunkHandOver: @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var chunks: [[UInt8]] = []  // at most `capacity`
    private var ended = false
    private var failure: (any Error)?
    private var closed = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Waits for room, then queues `chunk`. - Returns: false once the consumer has gone.
    func put(_ chunk: [UInt8]) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while chunks.count >= capacity && !closed { condition.wait() }
        guard !closed else { return false }
        chunks.append(chunk)
        condition.broadcast()
        return true
    }

    /// The end of the sequence, or the error it ended with.
    func finish(_ error: (any Error)?) {
        condition.lock()
        ended = true
        failure = error
        condition.broadcast()
        condition.unlock()
    }

    /// The consumer stops reading: a waiting producer gives up.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    func take() throws -> [UInt8]? {
        condition.lock()
        defer { condition.unlock() }
        while chunks.isEmpty && !ended { condition.wait() }
        if !chunks.isEmpty {
            condition.broadcast()
            return chunks.removeFirst()
        }
        if let failure { throw failure }
        return nil
    }
}

import Foundation

/// What a pool thread owns for its whole life: reusable codec contexts and scratch buffers, so
/// no parcel allocates them.
final class ThreadContext {
    let index: Int
    let codec: Codec
    /// Decompressed parcels land here.
    let scratch: ParcelBuffer
    /// Splits read from shared input land here (made on first use: copy mode never needs it).
    var input: ParcelBuffer {
        if let made = inputBuffer { return made }
        let made = ParcelBuffer(capacity: scratch.capacity + Int(SplitReader.lookahead))
        inputBuffer = made
        return made
    }
    private var inputBuffer: ParcelBuffer?

    /// After each job: buffers one big parcel grew are given back (`ParcelBuffer.releaseOversized`).
    func releaseOversized() {
        scratch.releaseOversized()
        inputBuffer?.releaseOversized()
    }

    init(index: Int, scratchCapacity: Int) throws(ElasticFlowError) {
        self.index = index
        codec = try Codec()
        scratch = ParcelBuffer(capacity: scratchCapacity)
    }
}

/// A fixed set of threads running submitted jobs in submission order. Jobs receive their
/// thread's `ThreadContext`.
final class WorkerPool: @unchecked Sendable {
    typealias Job = @Sendable (ThreadContext) -> Void

    // Guarded by `condition`: jobs, head, stopping, running.
    private let condition = NSCondition()
    private var jobs: [Job?] = []
    private var head = 0
    private var stopping = false
    private var running = 0
    private var threads: [Thread] = []
    private let exited = DispatchSemaphore(value: 0)

    let size: Int

    init(threads count: Int, name: String, scratchCapacity: Int) throws(ElasticFlowError) {
        size = max(1, count)
        var contexts: [ThreadContext] = []
        for index in 0..<size { contexts.append(try ThreadContext(index: index, scratchCapacity: scratchCapacity)) }
        for context in contexts {
            let transfer = ContextTransfer(context: context)
            let thread = Thread { [self] in
                self.work(transfer.context)
                self.exited.signal()
            }
            thread.name = "\(name)-\(context.index)"
            threads.append(thread)
        }
        for thread in threads { thread.start() }
    }

    func submit(_ job: @escaping Job) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Jobs queued or running.
    var busy: Int {
        condition.lock()
        defer { condition.unlock() }
        return jobs.count - head + running
    }

    private func work(_ context: ThreadContext) {
        while true {
            condition.lock()
            while head == jobs.count && !stopping { condition.wait() }
            if head == jobs.count {
                condition.unlock()
                return
            }
            let job = jobs[head]!
            jobs[head] = nil
            head += 1
            if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            running += 1
            condition.unlock()
            job(context)
            context.releaseOversized()
            condition.lock()
            running -= 1
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Waits until no job is queued or running.
    func waitUntilIdle() {
        condition.lock()
        while head < jobs.count || running > 0 { condition.wait() }
        condition.unlock()
    }

    /// Runs what is queued, then ends the threads and waits for them.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        for _ in threads { exited.wait() }
        threads = []
    }
}

/// A thread context handed to the one thread that will own it.
private struct ContextTransfer: @unchecked Sendable {
    let context: ThreadContext
}

/// A parcel buffer moves between threads with one owner at a time (handed over through the pool's
/// queue, the loop's post queue or a lock), which is what makes this sound.
extension ParcelBuffer: @unchecked Sendable {}

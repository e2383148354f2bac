import Dispatch
import Foundation
import Synchronization
import Testing

@testable import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// `WordCounter.write(format:limit:toFileDescriptor:)` never holds the counter's lock across a
/// write: with its output stuck in a full pipe, other threads still read the counter, a change
/// meanwhile fails the write with one clear error, and a write left alone gives `rendered`'s bytes.
@Suite struct WordCounterWriteTests {
    /// The write's result, set by its thread.
    final class Outcome: Sendable {
        let value = Mutex<Result<Void, ElasticFlowError>?>(nil)
    }

    /// A counter of `words` distinct words, each as many times as its index says (in all, far more
    /// text than a pipe holds).
    static func counter(words: Int) throws -> WordCounter {
        let counter = try WordCounter(partitions: 4)
        var text: [UInt8] = []
        for index in 0..<words { text += Array("word-number-\(index) ".utf8) }
        try counter.feed(text)
        try counter.finish()
        return counter
    }

    /// Waits until the pipe holds at least `bytes` (the writer is then blocked in `write(2)`), up
    /// to 10 s.
    static func waitUntilPipeHolds(_ fd: Int32, _ bytes: Int32) -> Bool {
        for _ in 0..<1000 {
            var queued: Int32 = 0
            if ioctl(fd, UInt(FIONREAD), &queued) == 0 && queued >= bytes { return true }
            usleep(10_000)
        }
        return false
    }

    /// Everything left in the pipe, to its end.
    static func drain(_ fd: Int32) -> [UInt8] {
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return all }
            all += chunk[..<n]
        }
    }

    /// Starts `counter.write` into a new pipe on another thread, and waits until it is stuck on
    /// the full pipe. - Returns: the read end and a semaphore signalled with the result.
    static func startStuckWrite(_ counter: WordCounter) throws -> (
        read: Int32, done: DispatchSemaphore, result: Outcome
    ) {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let done = DispatchSemaphore(value: 0)
        let result = Outcome()
        let (readEnd, writeEnd) = (fds[0], fds[1])
        DispatchQueue.global().async {
            let outcome = Result { () throws(ElasticFlowError) in
                try counter.write(format: .text, toFileDescriptor: writeEnd)
            }
            close(writeEnd)
            result.value.withLock { $0 = outcome }
            done.signal()
        }
        #expect(waitUntilPipeHolds(readEnd, 60 << 10), "the write fills the pipe")
        return (readEnd, done, result)
    }

    @Test func aStuckWriteLeavesTheCounterReadableAndWritesTheRenderedBytes() throws {
        let counter = try Self.counter(words: 40_000)
        let expected = try counter.rendered(format: .text)
        let (readEnd, done, result) = try Self.startStuckWrite(counter)
        defer { close(readEnd) }
        // The lock is free while the writer waits on the pipe: a read answers at once.
        let answered = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = counter.distinct
            answered.signal()
        }
        let free = answered.wait(timeout: .now() + 10) == .success
        #expect(free, "distinct answered while the write was stuck on a full pipe")
        let bytes = Self.drain(readEnd)
        done.wait()
        if !free { answered.wait() }
        #expect(result.value.withLock { if case .success = $0 { true } else { false } })
        let same = bytes == expected
        #expect(same, "the bytes written are rendered(format:)'s")
    }

    @Test func aChangeDuringAStuckWriteFailsItClearly() throws {
        let counter = try Self.counter(words: 40_000)
        let expected = try counter.rendered(format: .text)
        let (readEnd, done, result) = try Self.startStuckWrite(counter)
        defer { close(readEnd) }
        let fed = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            try? counter.feed(Array("a-new-word\n".utf8))
            fed.signal()
        }
        let free = fed.wait(timeout: .now() + 10) == .success
        #expect(free, "a feed went through while the write was stuck")
        let bytes = Self.drain(readEnd)
        done.wait()
        if !free { fed.wait() }
        let message = result.value.withLock { outcome -> String in
            if case .failure(let error) = outcome { return error.description }
            return "no error"
        }
        #expect(message.contains("changed while they were written"), "\(message)")
        let prefix = bytes.count < expected.count && Array(expected[..<bytes.count]) == bytes
        #expect(prefix, "what was written before the change is the start of the old counts")
    }
}

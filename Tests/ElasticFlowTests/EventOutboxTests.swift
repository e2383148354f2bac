import Foundation
import Testing

@testable import ElasticFlow

/// Records events, and checks that it is never called from two threads at once.
private final class OrderRecorder: Interceptor, @unchecked Sendable {
    // Guarded by lock.
    private let lock = NSLock()
    private var inside = 0
    private(set) var overlapped = false
    private var recorded: [UInt32] = []
    var steps: [UInt32] { lock.withLock { recorded } }

    func stepUpdated(step: UInt32, state: StepUpdateState, detail: String) {
        lock.withLock {
            inside += 1
            if inside > 1 { overlapped = true }
        }
        usleep(10)
        lock.withLock {
            recorded.append(step)
            inside -= 1
        }
    }
}

@Suite struct EventOutboxTests {
    @Test func deliversEveryEventInPostOrderOneThreadAtATime() {
        let recorder = OrderRecorder()
        let outbox = EventOutbox(interceptors: [recorder])
        // The lock stands in for the step lock: posting order is the order events are taken under it.
        let stepLock = NSLock()
        let counter = Counter()
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<500 {
                stepLock.lock()
                outbox.post(.stepUpdate(step: counter.next(), state: .running, detail: ""))
                stepLock.unlock()
                outbox.deliver()
            }
        }
        outbox.drain()
        #expect(recorder.steps == Array(1...2000))
        #expect(!recorder.overlapped)
    }

    @Test func stepStatesPrintAsBefore() {
        #expect(StepUpdateState.completedWithRetries.description == "completed-with-retries")
        #expect(StepUpdateState.masterTakesOver.rawValue == "master-takes-over")
        #expect(
            FlowEvent.stepUpdate(step: 2, state: .nodeDown, detail: "a: gone").description
                == "step 2 node-down: a: gone")
    }
}

private final class Counter: @unchecked Sendable {
    // Only called under the test's step lock.
    private var value: UInt32 = 0
    func next() -> UInt32 {
        value += 1
        return value
    }
}

import Foundation

/// Delivers a step's events to its interceptors in order, outside the step lock.
///
/// `post` appends under the step lock (so the order is the order of the state changes); whoever
/// releases the step lock then calls `deliver`, which hands every queued event to the
/// interceptors, one thread at a time (`deliveryLock`), in order. A thread that finds another
/// delivering leaves its events to it: the deliverer looks at the queue again after it lets go of
/// `deliveryLock`. `drain` (at the end of a step) waits until everything is delivered.
///
/// Lock order: step lock, then `queueLock` (a leaf). `deliveryLock` is never taken under the step
/// lock; interceptors run under it and must not call back into the master.
final class EventOutbox: @unchecked Sendable {
    let interceptors: [any Interceptor]
    /// Whether anyone listens: with no interceptor, events are not even built.
    let isActive: Bool
    // Guarded by `queueLock`.
    private let queueLock = NSLock()
    private var queue: [FlowEvent] = []
    /// Held while events are handed to the interceptors.
    private let deliveryLock = NSLock()

    init(interceptors: [any Interceptor]) {
        self.interceptors = interceptors
        isActive = !interceptors.isEmpty
    }

    /// Queues an event (under the step lock).
    func post(_ event: FlowEvent) {
        queueLock.withLock { queue.append(event) }
    }

    /// Delivers what is queued, unless another thread is delivering (it will deliver ours too).
    /// Never under the step lock.
    func deliver() {
        guard isActive else { return }
        while deliveryLock.try() {
            deliverQueued()
            deliveryLock.unlock()
            // An event queued after our last look, by a thread whose `try` failed while we held
            // the lock, is ours to deliver.
            if queueLock.withLock({ queue.isEmpty }) { return }
        }
    }

    /// Delivers everything queued, waiting for a delivery in progress.
    func drain() {
        guard isActive else { return }
        deliveryLock.lock()
        deliverQueued()
        deliveryLock.unlock()
    }

    // Under `deliveryLock`.
    private func deliverQueued() {
        while true {
            let batch = queueLock.withLock {
                let taken = queue
                queue.removeAll(keepingCapacity: true)
                return taken
            }
            if batch.isEmpty { return }
            for event in batch {
                for interceptor in interceptors { interceptor.intercept(event) }
            }
        }
    }
}

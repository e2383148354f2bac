import Testing

@testable import ElasticFlow

/// The dispatcher's rules that whole-step tests reach only by timing: combined results closed all
/// or nothing, and retries kept away from the node they failed on.
@Suite struct DispatcherTests {
    func dispatcher(receipts: Int, on node: String = "a") -> Dispatcher {
        let dispatcher = Dispatcher()
        dispatcher.addNode(.init(name: "a", inFlightLimit: 100))
        dispatcher.addNode(.init(name: "b", inFlightLimit: 100))
        for sequence in 1...UInt64(receipts) {
            dispatcher.admit(
                Receipt(step: 1, sequence: sequence, partition: 0, offset: 0, length: 10, items: 1, checksum: 0),
                buffer: nil)
            guard case .receipt(let taken, _) = dispatcher.take(for: node) else {
                Issue.record("nothing to take")
                return dispatcher
            }
            _ = dispatcher.open(taken, on: node)
        }
        return dispatcher
    }

    @Test func aCombinedResultClosesEveryReceiptItListsOnce() {
        let dispatcher = dispatcher(receipts: 3)
        let (closed, takenBack) = dispatcher.closeAll([1, 2, 3], from: "a")
        #expect(closed && takenBack.isEmpty)
        #expect(dispatcher.ledger.closedCount == 3 && dispatcher.ledger.openCount == 0)
        // The same combined result again (a duplicated frame): dropped whole.
        let again = dispatcher.closeAll([1, 2, 3], from: "a")
        #expect(!again.closed && again.takenBack.isEmpty)
        #expect(dispatcher.ledger.closedCount == 3 && dispatcher.ledger.duplicates == 1)
    }

    @Test func aCombinedResultWithAReceiptClosedElsewhereIsDroppedAndTheRestSentAgain() {
        let dispatcher = dispatcher(receipts: 3)
        // Receipt 2 was sent again to b (its first node was presumed dead) and b answered first.
        #expect(dispatcher.requeue(2, from: "a"))
        guard case .receipt(let retry, true) = dispatcher.take(for: "b") else {
            Issue.record("receipt 2 was not offered again")
            return
        }
        _ = dispatcher.open(retry, on: "b")
        #expect(dispatcher.close(2))
        // Then a's late combined answer for 1, 2 and 3 arrives: nothing of it counts.
        let (closed, takenBack) = dispatcher.closeAll([1, 2, 3], from: "a")
        #expect(!closed)
        #expect(Set(takenBack) == [1, 3], "the receipts still open on a are sent again")
        #expect(dispatcher.ledger.closedCount == 1 && dispatcher.ledger.duplicates == 1)
        #expect(dispatcher.ledger.state(of: 1) == .waiting(attempt: 1))
        #expect(dispatcher.ledger.state(of: 3) == .waiting(attempt: 1))
        // Their next answers close them, once.
        #expect(dispatcher.closeAll([1, 3], from: "b").closed)
        #expect(dispatcher.ledger.closedCount == 3 && dispatcher.ledger.openCount == 0)
    }

    @Test func aCombinedResultListingAReceiptTwiceOrAnUnknownOneCountsNothing() {
        let dispatcher = dispatcher(receipts: 2)
        #expect(!dispatcher.closeAll([1, 1], from: "a").closed)
        #expect(!dispatcher.closeAll([1, 99], from: "a").closed)
        #expect(dispatcher.ledger.closedCount == 0)
    }

    @Test func aRetryIsNotGivenBackToTheNodeItFailedOnWhileAnotherCanTakeIt() {
        let dispatcher = dispatcher(receipts: 1)
        dispatcher.exhausted = true
        #expect(dispatcher.taskFailed(1, on: "a") != nil)
        dispatcher.retry(1)
        #expect(dispatcher.take(for: "a") == .nothing, "a failed it, and b can take it")
        #expect(dispatcher.take(for: "b") == .receipt(1, isRetry: true))
        _ = dispatcher.open(1, on: "b")
        #expect(dispatcher.taskFailed(1, on: "b") != nil)
        dispatcher.retry(1)
        // It failed everywhere: any node may try again (the attempt limit ends it).
        #expect(dispatcher.take(for: "a") == .receipt(1, isRetry: true))
    }
}

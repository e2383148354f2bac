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
        // It failed everywhere: another node may try again (the attempt limit ends it), but not
        // b, where it just failed, while a is there.
        #expect(dispatcher.take(for: "b") == .nothing)
        #expect(dispatcher.take(for: "a") == .receipt(1, isRetry: true))
        _ = dispatcher.open(1, on: "a")
        #expect(dispatcher.taskFailed(1, on: "a") != nil)
        dispatcher.retry(1)
        dispatcher.removeNode("b")
        #expect(dispatcher.take(for: "a") == .receipt(1, isRetry: true), "the only node left")
    }

    @Test func aResultCountsOnlyFromANodeItsReceiptWasSentTo() {
        let dispatcher = dispatcher(receipts: 2)
        #expect(dispatcher.wasSent(1, to: "a") && !dispatcher.wasSent(1, to: "b"))
        // Sent again to b: both may answer it now (the first result wins).
        #expect(dispatcher.requeue(1, from: "a"))
        #expect(dispatcher.take(for: "b") == .receipt(1, isRetry: true))
        _ = dispatcher.open(1, on: "b")
        #expect(dispatcher.wasSent(1, to: "a") && dispatcher.wasSent(1, to: "b"))
        #expect(!dispatcher.wasSent(99, to: "a"))
    }

    @Test func aNodeIsExcludedAtItsThresholdAndItsReceiptsGoElsewhere() {
        let dispatcher = dispatcher(receipts: 3)
        #expect(dispatcher.countFailure(on: "a") == 1)
        #expect(dispatcher.countFailure(on: "a") == 2)
        #expect(dispatcher.countFailure(on: "b") == 1)
        let takenBack = dispatcher.exclude("a", why: "3 failures")
        #expect(Set(takenBack) == [1, 2, 3])
        #expect(dispatcher.isExcluded("a") && !dispatcher.isExcluded("b"))
        #expect(!dispatcher.hasNode("a") && dispatcher.nodes.map(\.name) == ["b"])
        #expect(dispatcher.ledger.open(on: "a") == 0)
        #expect(dispatcher.take(for: "b") == .receipt(1, isRetry: true))
    }

    @Test func anOverdueParcelNeverGoesBackToItsNode() {
        let dispatcher = dispatcher(receipts: 1)
        dispatcher.exhausted = true
        let later = monotonicSeconds() + 10
        let overdue = dispatcher.takeBackOverdue(now: later, limit: 1, except: "master")
        #expect(overdue.map(\.0.sequence) == [1] && overdue.map(\.1) == ["a"])
        #expect(dispatcher.take(for: "a") == .nothing)
        #expect(dispatcher.take(for: "b") == .receipt(1, isRetry: true))
        _ = dispatcher.open(1, on: "b")
        // It failed on b too: "failed everywhere" would let any node try again, but never a, where
        // it is stuck. And with a as the only node left, b's copy stays where it is.
        #expect(dispatcher.taskFailed(1, on: "b") != nil)
        dispatcher.retry(1)
        #expect(dispatcher.take(for: "a") == .nothing)
        #expect(dispatcher.take(for: "b") == .receipt(1, isRetry: true))
        _ = dispatcher.open(1, on: "b")
        dispatcher.removeNode("a")
        #expect(dispatcher.takeBackOverdue(now: later + 10, limit: 1, except: "master").isEmpty)
        #expect(dispatcher.ledger.state(of: 1) == .open(node: "b", attempt: 3))
    }

    @Test func aStragglerIsCopiedOnceToAnIdleNodeOnceThereIsAMedian() {
        let dispatcher = dispatcher(receipts: 6, on: "b")
        dispatcher.exhausted = true
        let settings = SpeculationSettings(multiplier: 4, minimumTime: .milliseconds(500), minimumFinished: 5)
        let later = monotonicSeconds() + 10
        #expect(dispatcher.copyStragglers(now: later, settings: settings, except: "master").isEmpty, "no median yet")
        for sequence in UInt64(1)...5 {
            #expect(dispatcher.close(sequence))
            _ = dispatcher.release(sequence)
        }
        let copied = dispatcher.copyStragglers(now: later, settings: settings, except: "master")
        #expect(copied.map(\.0.sequence) == [6] && copied.map(\.1) == ["b"])
        #expect(dispatcher.take(for: "b") == .nothing, "never back to the straggler")
        #expect(dispatcher.take(for: "a") == .receipt(6, isRetry: true))
        _ = dispatcher.open(6, on: "a")
        #expect(dispatcher.copyStragglers(now: later + 100, settings: settings, except: "master").isEmpty, "once")
        // The straggler's late answer still counts if it comes first: it was sent there.
        #expect(dispatcher.wasSent(6, to: "b") && dispatcher.close(6))
    }

    @Test func aRefusedResultsReceiptsAreOpenAgainForAnotherNode() {
        let dispatcher = dispatcher(receipts: 2)
        dispatcher.exhausted = true
        #expect(dispatcher.closeAll([1, 2], from: "a").closed)
        dispatcher.reopen([1, 2], refusedFrom: "a")
        #expect(dispatcher.ledger.closedCount == 0 && dispatcher.ledger.openCount == 2)
        #expect(dispatcher.take(for: "a") == .nothing)
        #expect(dispatcher.take(for: "b") == .receipt(1, isRetry: true))
        #expect(dispatcher.take(for: "b") == .receipt(2, isRetry: true))
    }
}

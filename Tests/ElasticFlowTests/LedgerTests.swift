import Testing

@testable import ElasticFlow

@Suite struct ReceiptTests {
    @Test func printsShortAndParsesBack() {
        let receipt = Receipt(
            step: 3, sequence: 42, partition: 1, offset: 1_048_576, length: 4_194_304, items: 812,
            checksum: 0x001A_2B3C)
        #expect(receipt.description == "3/42/1@1048576+4194304:812#001a2b3c")
        #expect(Receipt(receipt.description) == receipt)
    }

    @Test(arguments: [
        "", "3/42@0+1:1#00000000", "3/42/1@0+1:1#0000000", "3/42/1@0+1:1#zzzzzzzz", "3/42/1@x+1:1#00000000",
        "3/42/1@0+1#00000000", "-1/42/1@0+1:1#00000000", "3/42/1/9@0+1:1#00000000",
    ])
    func rejectsMalformedText(_ text: String) {
        #expect(Receipt(text) == nil)
    }
}

@Suite struct LedgerTests {
    func receipt(_ sequence: UInt64) -> Receipt {
        Receipt(step: 1, sequence: sequence, partition: 0, offset: 0, length: 10, items: 1, checksum: 0)
    }

    @Test func closesEachReceiptExactlyOnce() {
        var ledger = Ledger()
        ledger.register(receipt(1))
        ledger.open(receipt(1), on: "a")
        #expect(ledger.open(on: "a") == 1 && ledger.openCount == 1 && ledger.closedCount == 0)
        let first = ledger.close(1)
        let duplicate = ledger.close(1)
        let unknown = ledger.close(99)  // never opened
        #expect(first && !duplicate && !unknown)
        #expect(ledger.duplicates == 2)
        #expect(ledger.open(on: "a") == 0 && ledger.openCount == 0 && ledger.closedCount == 1)
    }

    @Test func takingBackCountsAttemptsAndALateAnswerStillCloses() {
        var ledger = Ledger()
        ledger.register(receipt(7))
        ledger.open(receipt(7), on: "a")
        #expect(ledger.attempts(7) == 1)
        let takenAt = ledger.takeBack(7)
        #expect(takenAt == 1)
        #expect(ledger.state(of: 7) == .waiting(attempt: 1))
        #expect(ledger.open(on: "a") == 0)
        let again = ledger.takeBack(7)
        #expect(again == nil)  // not open any more
        ledger.open(receipt(7), on: "b")
        #expect(ledger.attempts(7) == 2 && ledger.openReceipts(on: "b").map(\.sequence) == [7])
        // The first answer wins, whichever node gives it.
        let won = ledger.close(7)
        let late = ledger.close(7)
        #expect(won && !late)
    }

    @Test func restoredReceiptsAreClosedFromTheStart() {
        var ledger = Ledger()
        ledger.restoreClosed(receipt(1))
        ledger.register(receipt(2))
        #expect(ledger.closedCount == 1 && ledger.openCount == 1 && ledger.total == 2)
        let reclosed = ledger.close(1)
        #expect(!reclosed)
    }
}

@Suite struct SchedulerTests {
    @Test func picksTheLeastLoadedNodeUnderItsLimitTiesToTheEarliest() {
        var ledger = Ledger()
        let nodes = [Scheduler.Node(name: "master", inFlightLimit: 1), .init(name: "w1", inFlightLimit: 2)]
        let scheduler = Scheduler()
        #expect(scheduler.pick(from: nodes, ledger: ledger)?.name == "master")  // a tie: the earliest
        for (sequence, node) in [(1, "master"), (2, "w1"), (3, "w1")] {
            let receipt = Receipt(
                step: 1, sequence: UInt64(sequence), partition: 0, offset: 0, length: 1, items: 1, checksum: 0)
            ledger.register(receipt)
            ledger.open(receipt, on: node)
        }
        #expect(scheduler.pick(from: nodes, ledger: ledger) == nil)  // everyone at the limit
        _ = ledger.close(2)
        #expect(scheduler.pick(from: nodes, ledger: ledger)?.name == "w1")
        #expect(scheduler.pick(from: [], ledger: ledger) == nil)
    }
}

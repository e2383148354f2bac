import Foundation

/// Which receipt goes where: the ledger, the nodes the scheduler picks from, the parcels waiting
/// to be sent (new or again), task failures, and overdue parcels.
///
/// It has no lock of its own: every member is used under the step lock (`StepRun.lock`), because
/// a node going down must take its receipts back in the same instant it leaves the scheduler, and
/// the links (`LinkBook`) change both. It never reads the disk (the cutter does, under its own
/// lock) and never calls out: the step run emits the events its answers describe.
final class Dispatcher {
    /// What `take(for:)` found for a node with room.
    enum Take: Equatable {
        /// A receipt to send (a new parcel, or one to send again).
        case receipt(UInt64, isRetry: Bool)
        /// Nothing is waiting: cut a new parcel (outside the step lock) and `admit` it.
        case cut
        /// Nothing to send now.
        case nothing
    }

    private(set) var ledger = Ledger()

    /// Sizes the ledger for about `count` parcels (an estimate from the sources' size).
    func expect(parcels count: Int) { ledger.reserveCapacity(count) }
    private(set) var nodes: [Scheduler.Node] = []
    /// Receipts taken back, to send again.
    private var retryQueue: [UInt64] = []
    /// Parcels cut but not yet sent anywhere, in sequence order.
    private var fresh: [UInt64] = []
    /// The raw bytes of unclosed receipts.
    private var parcels: [UInt64: ParcelBuffer] = [:]
    private var distributedAt: [UInt64: Double] = [:]
    private var taskFailures: [UInt64: Int] = [:]
    private var failedOn: [UInt64: Set<String>] = [:]
    /// The nodes each receipt was sent to, every attempt: a result is taken only from one of them.
    private var sentTo: [UInt64: [String]] = [:]
    /// The nodes a receipt went overdue on: it is never sent to them again.
    private var stuckOn: [UInt64: Set<String>] = [:]
    /// The node each receipt failed on last: with other nodes there, never its next one.
    private var lastFailedOn: [UInt64: String] = [:]
    /// Failures per node in this step (task errors, refused results, overdue parcels).
    private var failuresByNode: [String: Int] = [:]
    /// Receipts taken back from each node to be sent again (it went down, was excluded, was
    /// overdue, or answered too late), for the status board.
    private(set) var takenBackByNode: [String: Int] = [:]
    /// Results from each node dropped as duplicates (their receipts were already closed).
    private(set) var duplicatesByNode: [String: Int] = [:]
    /// The nodes that refused a receipt's bytes as bad input (`frameFlagBadInput`).
    private var badInputFrom: [UInt64: Set<String>] = [:]
    /// Nodes excluded from the step, with why; they are never scheduled again.
    private(set) var excluded: [String: String] = [:]
    /// How long recent parcels took, for the median speculation compares with.
    private(set) var times = ParcelTimes()
    /// Receipts copied speculatively, and the node each straggled on.
    private(set) var speculated: [UInt64: String] = [:]
    /// Every parcel has been cut.
    var exhausted = false
    /// Pool threads cutting a parcel right now (outside the step lock).
    var cutting = 0

    /// No parcel is left to cut, send or answer.
    var isDrained: Bool { exhausted && cutting == 0 && retryQueue.isEmpty && fresh.isEmpty && ledger.openCount == 0 }

    // MARK: nodes

    func hasNode(_ name: String) -> Bool { nodes.contains { $0.name == name } }
    func isExcluded(_ name: String) -> Bool { excluded[name] != nil }

    /// Counts one failure of `node` (a task error, a refused result, an overdue parcel).
    /// - Returns: its failures in the step so far.
    func countFailure(on node: String) -> Int {
        failuresByNode[node, default: 0] += 1
        return failuresByNode[node]!
    }

    /// Takes `node` out of the step for good: off the scheduler, its open receipts taken back.
    /// - Returns: the receipts taken back.
    func exclude(_ node: String, why: String) -> [UInt64] {
        excluded[node] = why
        removeNode(node)
        let open = ledger.openReceipts(on: node).map(\.sequence)
        for sequence in open { requeue(sequence, from: node) }
        return open
    }

    /// Whether `sequence` was ever sent to `node` (this attempt or an earlier one).
    func wasSent(_ sequence: UInt64, to node: String) -> Bool { sentTo[sequence]?.contains(node) == true }
    func addNode(_ node: Scheduler.Node) { nodes.append(node) }
    func removeNode(_ name: String) { nodes.removeAll { $0.name == name } }

    /// The node with room and the fewest open receipts.
    func pickNode(excluding excluded: Set<String> = []) -> Scheduler.Node? {
        Scheduler().pick(from: nodes, ledger: ledger, excluding: excluded)
    }

    // MARK: receipts

    /// What to send to `node`: a retry that did not fail there, else a parcel already cut, else a
    /// new one; once every parcel is cut, a retry that failed on every node there is (so a node
    /// that cannot run a parcel — a file it cannot read — never takes it back from a node that
    /// can, and the parcel's attempts are not spent on it).
    func take(for node: String) -> Take {
        while !retryQueue.isEmpty,
            let index = retryQueue.firstIndex(where: { failedOn[$0]?.contains(node) != true })
                ?? (exhausted && fresh.isEmpty
                    ? retryQueue.firstIndex(where: { failedOnEveryNode($0) && mayTakeAgain($0, node) }) : nil)
        {
            let retry = retryQueue.remove(at: index)
            if case .waiting = ledger.state(of: retry) { return .receipt(retry, isRetry: true) }
        }
        if !fresh.isEmpty { return .receipt(fresh.removeFirst(), isRetry: false) }
        return exhausted ? .nothing : .cut
    }

    /// Whether `node` may take a receipt that failed everywhere: never where it is stuck, and not
    /// where it just failed while some other node may take it.
    private func mayTakeAgain(_ sequence: UInt64, _ node: String) -> Bool {
        let stuck = stuckOn[sequence] ?? []
        guard !stuck.contains(node) else { return false }
        return lastFailedOn[sequence] != node || !nodes.contains { $0.name != node && !stuck.contains($0.name) }
    }

    /// Whether a receipt failed on every node there is now.
    private func failedOnEveryNode(_ sequence: UInt64) -> Bool {
        guard let failed = failedOn[sequence] else { return nodes.isEmpty }
        return nodes.allSatisfy { failed.contains($0.name) }
    }

    /// A new parcel joins the ledger, waiting to be sent (shared input: with no buffer).
    func admit(_ receipt: Receipt, buffer: ParcelBuffer?) {
        if let buffer { parcels[receipt.sequence] = buffer }
        ledger.register(receipt)
        fresh.append(receipt.sequence)
    }

    /// A parcel aggregated before a restart: counted as closed, never sent.
    func restoreClosed(_ receipt: Receipt) { ledger.restoreClosed(receipt) }

    /// Marks the receipt sent to `node`.
    /// - Returns: the receipt, its attempt number, and its parcel (nil in shared-input mode).
    func open(_ sequence: UInt64, on node: String) -> (receipt: Receipt, attempt: Int, buffer: ParcelBuffer?) {
        let receipt = ledger.receipt(sequence)!
        ledger.open(receipt, on: node)
        if sentTo[sequence]?.contains(node) != true { sentTo[sequence, default: []].append(node) }
        distributedAt[sequence] = monotonicSeconds()
        return (receipt, ledger.attempts(sequence), parcels[sequence])
    }

    /// Lets go of an unclosed receipt's parcel bytes (they were sent from the file, and will be
    /// again if need be). - Returns: the buffer, to recycle.
    func dropParcel(_ sequence: UInt64) -> ParcelBuffer? { parcels.removeValue(forKey: sequence) }

    /// Takes a receipt back from a node that will not answer it, to send it again.
    /// - Returns: whether it was open there.
    @discardableResult
    func requeue(_ sequence: UInt64, from node: String) -> Bool {
        guard case .open(node, _) = ledger.state(of: sequence) else { return false }
        ledger.takeBack(sequence)
        retryQueue.append(sequence)
        takenBackByNode[node, default: 0] += 1
        return true
    }

    /// Closes a receipt on its first result (exactly once).
    /// - Returns: false for a result whose receipt was already closed (a duplicate, a late answer).
    func close(_ sequence: UInt64) -> Bool {
        guard ledger.close(sequence) else { return false }
        retryQueue.removeAll { $0 == sequence }
        return true
    }

    /// Closes every receipt a (combined) result lists, or none: the exactly-once rule for a
    /// result covering several receipts. Its one aggregate cannot be split, so if any receipt is
    /// already closed (aggregated from another answer) the whole result is dropped — counted as
    /// one duplicate — and those of its receipts still open on `node` are taken back to be sent
    /// again (they are not failures: the node answered them, just too late to count).
    /// - Returns: whether the receipts were closed (then the result is to be merged), and the
    ///   receipts taken back.
    func closeAll(_ sequences: [UInt64], from node: String) -> (closed: Bool, takenBack: [UInt64]) {
        if sequences.count == 1 {
            let closed = close(sequences[0])
            if !closed { duplicatesByNode[node, default: 0] += 1 }
            return (closed, [])
        }
        let unique = Set(sequences)
        guard unique.count == sequences.count,
            sequences.allSatisfy({ ledger.state(of: $0) != nil && ledger.state(of: $0) != .closed })
        else {
            _ = ledger.close(UInt64.max)  // counts the duplicate (no such receipt)
            duplicatesByNode[node, default: 0] += 1
            var takenBack: [UInt64] = []
            for sequence in unique where requeue(sequence, from: node) { takenBack.append(sequence) }
            return (false, takenBack)
        }
        for sequence in sequences { _ = close(sequence) }
        return (true, [])
    }

    /// Opens again receipts whose result was claimed, then refused before it was merged (it could
    /// not be what their parcels hold): they go to another node, and `node` is not preferred.
    func reopen(_ sequences: [UInt64], refusedFrom node: String) {
        for sequence in sequences where ledger.reopen(sequence) {
            failedOn[sequence, default: []].insert(node)
            lastFailedOn[sequence] = node
            processed[sequence] = nil
            retryQueue.append(sequence)
        }
    }

    /// What workers processed for each receipt (shared-input mode), kept from the first answer:
    /// a later answer for the same receipt (a duplicate, a retry) must have read the same bytes.
    private(set) var processed: [UInt64: ProcessedRange] = [:]

    /// Records what a node processed for a receipt.
    /// - Returns: the earlier record when it differs (the bytes changed between two readings).
    func recordProcessed(_ range: ProcessedRange, for sequence: UInt64) -> ProcessedRange? {
        if let earlier = processed[sequence] { return earlier == range ? nil : earlier }
        processed[sequence] = range
        return nil
    }

    /// The merged receipt's parcel, now free, and the seconds since it was distributed.
    func release(_ sequence: UInt64) -> (buffer: ParcelBuffer?, seconds: Double) {
        let now = monotonicSeconds()
        let seconds = now - (distributedAt.removeValue(forKey: sequence) ?? now)
        times.record(seconds)
        return (parcels.removeValue(forKey: sequence), seconds)
    }

    /// Copies stragglers: every receipt open on a worker for longer than `settings.multiplier` ×
    /// the median parcel time (and `minimumTime`), once enough parcels finished, while nothing
    /// else waits to be sent and some other node is idle (no open receipt). The receipt is taken
    /// back from the straggler (which may still answer: the first result wins) and queued to be
    /// sent again, never to that node; each receipt is copied once.
    /// - Returns: each receipt copied, the node it straggled on, and for how long.
    func copyStragglers(now: Double, settings: SpeculationSettings, except master: String)
        -> [(Receipt, String, Double)]
    {
        guard exhausted, fresh.isEmpty, retryQueue.isEmpty, times.finished >= settings.minimumFinished,
            let median = times.median
        else { return [] }
        let threshold = max(settings.minimumTime.inSeconds, settings.multiplier * median)
        var copied: [(Receipt, String, Double)] = []
        for (sequence, sentAt) in distributedAt where now - sentAt > threshold && speculated[sequence] == nil {
            guard case .open(let node, _) = ledger.state(of: sequence), node != master,
                let receipt = ledger.receipt(sequence),
                nodes.contains(where: { $0.name != node && ledger.open(on: $0.name) == 0 })
            else { continue }
            ledger.takeBack(sequence)
            failedOn[sequence, default: []].insert(node)
            stuckOn[sequence, default: []].insert(node)
            speculated[sequence] = node
            retryQueue.append(sequence)
            copied.append((receipt, node, now - sentAt))
        }
        return copied
    }

    /// A task failed on `node`: the receipt is taken back.
    /// - Returns: the receipt and how often it failed, or nil when it was not open there.
    func taskFailed(_ sequence: UInt64, on node: String) -> (receipt: Receipt, failures: Int)? {
        guard case .open(node, _) = ledger.state(of: sequence), let receipt = ledger.receipt(sequence) else {
            return nil
        }
        ledger.takeBack(sequence)
        let failures = taskFailures[sequence, default: 0] + 1
        taskFailures[sequence] = failures
        failedOn[sequence, default: []].insert(node)
        lastFailedOn[sequence] = node
        return (receipt, failures)
    }

    /// Records that `node` refused `sequence`'s bytes as bad input (a word over the cap).
    /// - Parameter trusted: the report comes from the master's own work.
    /// - Returns: whether the report is confirmed, so the step must fail: it is trusted, a second
    ///   node refused the same bytes, or no other node is left to check them. A single worker's
    ///   word is not enough: a hostile worker could otherwise fail any step with one frame.
    func reportBadInput(_ sequence: UInt64, from node: String, trusted: Bool) -> Bool {
        badInputFrom[sequence, default: []].insert(node)
        let reporters = badInputFrom[sequence]!
        return trusted || reporters.count >= 2 || !nodes.contains { !reporters.contains($0.name) }
    }

    /// Queues a receipt taken back by `taskFailed` to be sent again.
    func retry(_ sequence: UInt64) { retryQueue.append(sequence) }

    /// Takes back every parcel unanswered for longer than `limit` on a worker (a task stuck, or a
    /// node far slower than the rest), to send it to another node: the first result is
    /// aggregated, the other dropped as a duplicate. It is never sent to the node it was stuck on
    /// again; while no other node is there to take it, it stays open where it is.
    /// - Returns: each receipt taken back, the node it was on, and for how long.
    func takeBackOverdue(now: Double, limit: Double, except master: String) -> [(Receipt, String, Double)] {
        var overdue: [(Receipt, String, Double)] = []
        for (sequence, sentAt) in distributedAt where now - sentAt > limit {
            guard case .open(let node, _) = ledger.state(of: sequence), node != master,
                let receipt = ledger.receipt(sequence),
                nodes.contains(where: { $0.name != node && stuckOn[sequence]?.contains($0.name) != true })
            else { continue }
            ledger.takeBack(sequence)
            distributedAt[sequence] = nil
            failedOn[sequence, default: []].insert(node)
            stuckOn[sequence, default: []].insert(node)
            retryQueue.append(sequence)
            overdue.append((receipt, node, now - sentAt))
        }
        return overdue
    }
}

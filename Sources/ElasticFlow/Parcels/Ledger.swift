/// The master's book of a step's receipts: which are open (and on which node, after how many
/// attempts) and which are closed (aggregated). Closing is exactly-once: a second result for a
/// closed receipt is refused and counted as a duplicate. Used by one thread at a time.
public struct Ledger: Sendable {
    /// Where one receipt stands.
    public enum State: Hashable, Sendable {
        /// Handed to a node, not yet answered.
        case open(node: String, attempt: Int)
        /// Taken back from a node (it went down or the task failed there): to be sent again.
        case waiting(attempt: Int)
        /// Its result was aggregated; any later result for it is a duplicate.
        case closed
    }

    private(set) var receipts: [UInt64: Receipt] = [:]
    private(set) var states: [UInt64: State] = [:]
    private(set) var openByNode: [String: Int] = [:]
    /// Kept as receipts change state, so the counts cost nothing per parcel.
    public private(set) var closedCount = 0
    /// Results dropped because their receipt was already closed.
    public private(set) var duplicates = 0

    /// An empty ledger.
    public init() {}

    /// Receipts not yet closed (open on a node or waiting to be sent again).
    public var openCount: Int { states.count - closedCount }
    /// Every receipt the step has issued, in any state.
    public var total: Int { states.count }

    /// Open receipts held by a node.
    public func open(on node: String) -> Int { openByNode[node, default: 0] }

    /// The state of the receipt with this sequence number; nil when none was issued.
    public func state(of sequence: UInt64) -> State? { states[sequence] }
    /// The receipt with this sequence number; nil when none was issued.
    public func receipt(_ sequence: UInt64) -> Receipt? { receipts[sequence] }

    /// Makes room for `count` receipts up front, so a step of many small parcels does not grow
    /// (rehash) the tables as it goes.
    public mutating func reserveCapacity(_ count: Int) {
        receipts.reserveCapacity(count)
        states.reserveCapacity(count)
    }

    /// Records a receipt that is about to be handed out (its first `open` makes attempt 1).
    public mutating func register(_ receipt: Receipt) {
        receipts[receipt.sequence] = receipt
        if states.updateValue(.waiting(attempt: 0), forKey: receipt.sequence) == .closed { closedCount -= 1 }
    }

    /// Records a receipt aggregated before a restart (a resumed step): closed from the start.
    public mutating func restoreClosed(_ receipt: Receipt) {
        receipts[receipt.sequence] = receipt
        if states.updateValue(.closed, forKey: receipt.sequence) != .closed { closedCount += 1 }
    }

    /// Records a parcel handed to a node (a first attempt or a retry).
    public mutating func open(_ receipt: Receipt, on node: String) {
        var attempt = 1
        switch states[receipt.sequence] {
        case .open(let previous, let previousAttempt):
            openByNode[previous, default: 0] -= 1
            attempt = previousAttempt + 1
        case .waiting(let previousAttempt):
            attempt = previousAttempt + 1
        case .closed:
            closedCount -= 1
        case nil:
            break
        }
        receipts[receipt.sequence] = receipt
        states[receipt.sequence] = .open(node: node, attempt: attempt)
        openByNode[node, default: 0] += 1
    }

    /// Closes a receipt whose result is being aggregated. A result for a receipt waiting to be
    /// sent again (a late answer from a node presumed down) is as good as any and closes it too.
    /// - Returns: false (and counts a duplicate) when it was already closed or never opened.
    public mutating func close(_ sequence: UInt64) -> Bool {
        switch states[sequence] {
        case .open(let node, _):
            openByNode[node, default: 0] -= 1
        case .waiting:
            break
        case .closed, nil:
            duplicates += 1
            return false
        }
        states[sequence] = .closed
        closedCount += 1
        return true
    }

    /// Opens a closed receipt again: its result was refused before it was merged.
    /// - Returns: whether it was closed.
    public mutating func reopen(_ sequence: UInt64) -> Bool {
        guard states[sequence] == .closed else { return false }
        states[sequence] = .waiting(attempt: 1)
        closedCount -= 1
        return true
    }

    /// Takes an open receipt back from its node, to be sent again.
    /// - Returns: how many times it was attempted, or nil when it was not open.
    @discardableResult
    public mutating func takeBack(_ sequence: UInt64) -> Int? {
        guard case .open(let node, let attempt) = states[sequence] else { return nil }
        openByNode[node, default: 0] -= 1
        states[sequence] = .waiting(attempt: attempt)
        return attempt
    }

    /// How many times a receipt was handed out.
    public func attempts(_ sequence: UInt64) -> Int {
        switch states[sequence] {
        case .open(_, let attempt), .waiting(let attempt): return attempt
        case .closed, nil: return 0
        }
    }

    /// The receipts open on a node (to send elsewhere when it goes down), in sequence order.
    public func openReceipts(on node: String) -> [Receipt] {
        states.compactMap { sequence, state in
            if case .open(node, _) = state { return receipts[sequence] }
            return nil
        }.sorted { $0.sequence < $1.sequence }
    }
}

/// Picks the node for the next parcel: the one with the fewest open receipts among those under
/// their in-flight limit; ties go to the earliest node in the list (the master puts itself first
/// when it processes parcels: its own parcels cost no compression, transfer or serialized merge).
public struct Scheduler: Sendable {
    /// A node the scheduler may pick.
    public struct Node: Hashable, Sendable {
        /// The node's name (a worker's address, or `master`).
        public var name: String
        /// Open receipts the node may hold at once.
        public var inFlightLimit: Int
        /// A node named `name` that may hold `inFlightLimit` open receipts.
        public init(name: String, inFlightLimit: Int) {
            self.name = name
            self.inFlightLimit = inFlightLimit
        }
    }

    /// A scheduler; it holds no state (the ledger has it).
    public init() {}

    /// - Parameters:
    ///   - nodes: the candidates, in order of preference for ties.
    ///   - ledger: the step's receipts, for each node's open count.
    ///   - excluded: nodes not to pick (they have nothing they may take now).
    /// - Returns: the chosen node, or nil when every node is at its limit.
    public func pick(from nodes: [Node], ledger: Ledger, excluding excluded: Set<String> = []) -> Node? {
        var best: Node?
        var bestOpen = Int.max
        for node in nodes where !excluded.contains(node.name) {
            let open = ledger.open(on: node.name)
            if open < node.inFlightLimit && open < bestOpen {
                best = node
                bestOpen = open
            }
        }
        return best
    }
}

import ElasticFlow

/// The example's own task: how often each ASCII letter occurs, case folded (`A` and `a` count as
/// `a`; every other byte is ignored). Each node counts its parcel's lines into a dictionary; the
/// default aggregator adds dictionaries key by key, so the master's result does not depend on
/// which node counted what, or in which order the results came back.
enum LetterFrequencies {
    /// The name nodes know the task by: the master sends only this with each step.
    static let name = "letter-frequencies"

    static let task = FlowTask(
        Flow.lineBytes.reduce(into: [String: Int]()) { counts, line in
            for byte in line {
                let lower = (0x41...0x5A).contains(byte) ? byte | 0x20 : byte  // A-Z to a-z, only those
                if (0x61...0x7A).contains(lower) { counts[String(UnicodeScalar(lower)), default: 0] += 1 }
            }
        })

    /// Every node's registry: the standard tasks and this one.
    static func registry() throws(ElasticFlowError) -> TaskRegistry {
        var tasks = TaskRegistry.standard
        try tasks.register(name, task)
        return tasks
    }
}

/// What a `StatusBoard` holds at one instant: the step and its progress, the nodes, the receipts,
/// the chaos faults, the throughput over time and the recent events. It is what `/api/status`
/// serves as JSON (docs/status.md lists every field and its unit), and what the live page and
/// `/metrics` are made from.
public struct StatusSnapshot: Sendable, Codable, Hashable {
    /// The format's version: a field may be added in the same version, never renamed or removed.
    public var version = 1
    /// `master` or `worker`.
    public var role: String
    /// The node's name (a worker's `worker@HOST:PORT`, the master's `master`).
    public var name: String
    /// Seconds since the board was created.
    public var uptimeSeconds: Double
    /// The current step (or the last one, once it ended); nil before the first step and on a worker.
    public var step: LiveStepStatus?
    /// Steps begun since the board was created.
    public var stepsBegun: Int
    /// Every node the step has seen, the master first, then by name.
    public var nodes: [NodeStatus]
    /// The current step's receipts by state.
    public var receipts: ReceiptCounts
    /// Chaos faults injected and recovered in the step, by kind (empty when chaos is off).
    public var chaos: [ChaosCount]
    /// With `--compression auto`: the codec in use now on each link and direction (the last
    /// choice of each); empty with a fixed codec.
    public var compression: [CompressionChoice]
    /// Source bytes aggregated per second, sampled about twice a second (the last 600 samples).
    public var throughput: [ThroughputPoint]
    /// The last events (at most `StatusBoard.eventLimit`), oldest first.
    public var events: [StatusEvent]
    /// Counts since the board was created, over every step (what `/metrics` counters report).
    public var totals: StatusTotals
    /// On a worker: its own counters (nil on a master).
    public var worker: WorkerStatus?
}

/// One step as the board sees it.
public struct LiveStepStatus: Sendable, Codable, Hashable {
    /// The step's number.
    public var number: UInt32
    /// The registered name of its task.
    public var task: String
    /// `connecting` (waiting for workers), `running`, then `completed`, `completed-with-retries` or
    /// `failed`.
    public var state: String
    /// Whether the step is over (completed or failed): nothing more will change.
    public var ended: Bool
    /// Why it failed, or empty.
    public var detail: String
    /// Seconds since the step began (its length, once ended).
    public var seconds: Double
    /// Source bytes aggregated (the results of their parcels merged).
    public var bytesDone: UInt64
    /// Source bytes in all, when known (regular files); nil for streams.
    public var bytesTotal: UInt64?
    /// Parcels cut so far.
    public var parcelsCut: Int
    /// Receipts closed (parcels whose results were aggregated).
    public var parcelsDone: Int
    /// Source bytes aggregated per second over the last second or so (the whole step, once ended).
    public var bytesPerSecond: Double
    /// Seconds left at the current rate; nil when the total or the rate is unknown, 0 once ended.
    public var etaSeconds: Double?
    /// Parcels sent again (after a node went down, a task error or an overdue parcel).
    public var retries: Int
    /// Results dropped because their receipt was already closed.
    public var duplicates: Int
    /// ERROR answers from tasks.
    public var taskErrors: Int
    /// Results refused (their node treated as failed).
    public var refusedResults: Int
    /// Speculative copies of straggling parcels sent.
    public var speculativeCopies: Int
    /// Parcel bytes sent to workers as they crossed the wire (retries included).
    public var bytesSentWire: UInt64
    /// Result bytes received from workers as they crossed the wire.
    public var bytesReceivedWire: UInt64
    /// Parcels whose result each node produced, as the step summary reports them (filled in when
    /// the step ends).
    public var parcelsByNode: [String: Int]
}

/// One node as the master sees it.
public struct NodeStatus: Sendable, Codable, Hashable {
    /// The node's name in the step: a worker's address (`127.0.0.1:7000`), `joined:HOST:PORT` for a
    /// worker that joined, or `master`.
    public var name: String
    /// The name the worker gave itself in its handshake (escaped as peer text), or empty.
    public var label: String
    /// `up`, `joined` (a worker that joined and is up), `connecting`, `suspected` (silent past the
    /// heartbeat time-out; its parcels went elsewhere), `leaving` (said BYE), `excluded` or `down`.
    public var state: String
    /// Receipts open on it now.
    public var openReceipts: Int
    /// Receipts taken back from it in the step to be sent again (it went down, was excluded, held
    /// a parcel past its time, or answered a combined result too late).
    public var retries: Int
    /// Its results dropped in the step because their receipts were already closed.
    public var duplicates: Int
    /// Parcels it processed in the step (receipts closed with its result).
    public var parcelsDone: Int
    /// Bytes of parcels sent to it (as on the wire; for the master, handed to its threads).
    public var bytesOut: UInt64
    /// Bytes of results received from it (as on the wire; 0 for the master).
    public var bytesIn: UInt64
}

/// A step's receipts by state.
public struct ReceiptCounts: Sendable, Codable, Hashable {
    /// Handed to a node, not yet answered.
    public var open = 0
    /// Taken back (or cut and not yet sent): to be sent.
    public var waiting = 0
    /// Aggregated.
    public var closed = 0
}

/// Faults of one kind injected and recovered.
public struct ChaosCount: Sendable, Codable, Hashable {
    /// The fault kind (`FaultKind`'s raw value: `task-raises`, `connection-drop`, ...).
    public var kind: String
    /// Injected so far.
    public var injected: Int
    /// Injected faults whose receipts all closed.
    public var recovered: Int
}

/// One sample of the throughput chart.
public struct ThroughputPoint: Sendable, Codable, Hashable {
    /// Seconds since the step began.
    public var seconds: Double
    /// Source bytes aggregated per second since the previous sample.
    public var bytesPerSecond: Double
}

/// One recent event, as the `LoggingInterceptor` would print it.
public struct StatusEvent: Sendable, Codable, Hashable {
    /// Seconds since the board was created.
    public var seconds: Double
    /// The step it belongs to (0 for a worker's own events).
    public var step: UInt32
    /// The event's line (`step 1 node-down: 127.0.0.1:7000: connection reset`).
    public var text: String
}

/// Counts over every step since the board was created.
public struct StatusTotals: Sendable, Codable, Hashable {
    /// Parcels cut.
    public var parcelsCut = 0
    /// Receipts closed.
    public var parcelsDone = 0
    /// Source bytes aggregated.
    public var bytesDone: UInt64 = 0
    /// Parcel bytes sent to workers, as on the wire.
    public var bytesSentWire: UInt64 = 0
    /// Result bytes received from workers, as on the wire.
    public var bytesReceivedWire: UInt64 = 0
    /// Parcels sent again.
    public var retries = 0
    /// Results dropped as duplicates.
    public var duplicates = 0
    /// ERROR answers from tasks.
    public var taskErrors = 0
    /// Steps that completed.
    public var stepsCompleted = 0
    /// Steps that failed.
    public var stepsFailed = 0
}

/// A worker's own counters.
public struct WorkerStatus: Sendable, Codable, Hashable {
    /// Masters connected and authenticated now.
    public var masters = 0
    /// Parcels whose task ran here (answered with a result).
    public var parcelsDone = 0
    /// Parcels whose task failed here (answered with an ERROR).
    public var taskErrors = 0
    /// Parcel bytes received, as on the wire.
    public var bytesIn: UInt64 = 0
    /// Result bytes sent, as on the wire.
    public var bytesOut: UInt64 = 0
    /// Parcels being processed now.
    public var inFlight = 0
}

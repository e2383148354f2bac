import Synchronization

/// Where a duration a `StatusBoard` sees was spent.
public enum DurationKind: String, Sendable, CaseIterable {
    /// A parcel's task: on the master, from sending the parcel to its result's arrival; on a
    /// worker, the task's run.
    case task
    /// The master merging one result (one or several receipts) into the step's output.
    case merge
}

/// Receives every duration a `StatusBoard` records (for histograms), on the thread that measured it.
public protocol DurationObserver: Sendable {
    /// One duration of `kind`, in seconds.
    func observe(_ kind: DurationKind, seconds: Double)
}

/// The live state of a master's steps or of a worker, for the status page, `/api/status` and
/// `/metrics`: one lock (a `Mutex`) over a small model that the master updates as things happen.
///
/// A master feeds it as an interceptor (one short lock per event) and with a sample of its
/// scheduling state about five times a second, taken under the step lock on the thread that
/// already wakes that often (`StepRun.execute`); a worker counts each parcel it answers. Nothing
/// is taken per byte. `snapshot()` copies the model out as a `StatusSnapshot`.
public final class StatusBoard: Interceptor, Sendable {
    /// Recent events kept (the oldest go first), of which `parcelEventLimit` parcel events at most.
    public static let eventLimit = 200
    /// Parcel events (`task-complete`) kept among the recent events.
    public static let parcelEventLimit = 40
    /// Throughput samples kept.
    static let throughputLimit = 600
    /// Seconds between two throughput samples.
    static let throughputInterval = 0.5

    /// `master` or `worker`.
    public let role: String
    /// The node's name, as the snapshot reports it.
    public let name: String
    private let observer: (any DurationObserver)?
    private let created = monotonicSeconds()
    private let state = Mutex(Model())

    /// What a node's line holds between samples.
    private struct NodeCounters {
        var label = ""
        var state = "connecting"
        var open = 0
        var retries = 0
        var duplicates = 0
        var parcelsDone = 0
        var bytesOut: UInt64 = 0
        var bytesIn: UInt64 = 0
        var wasUp = false
    }

    private struct Model {
        var step: LiveStepStatus?
        var stepStart = 0.0
        var stepsBegun = 0
        var nodes: [String: NodeCounters] = [:]
        var receipts = ReceiptCounts()
        var chaos: [ChaosCount] = []
        var compression: [CompressionChoice] = []
        var throughput = Ring<ThroughputPoint>(limit: StatusBoard.throughputLimit)
        var lastRate: (seconds: Double, bytes: UInt64) = (0, 0)
        /// Step updates and a worker's own events (node up, down, ...): rare, and what a reader looks for.
        var events = Ring<StatusEvent>(limit: StatusBoard.eventLimit - StatusBoard.parcelEventLimit)
        /// Parcel events (`task-complete`): one per parcel, kept apart so they never push out the above.
        var parcelEvents = Ring<StatusEvent>(limit: StatusBoard.parcelEventLimit)
        /// Totals of the steps before the current one; the current one's are added in `snapshot`.
        var earlier = StatusTotals()
        var worker: WorkerStatus?
    }

    /// A board for a master (`role` "master") or a worker ("worker").
    /// - Parameters:
    ///   - role: `master` or `worker`.
    ///   - name: the node's name as the snapshot reports it.
    ///   - observer: receives every task and merge duration (the `/metrics` histograms), or nil.
    public init(role: String, name: String, observer: (any DurationObserver)? = nil) {
        self.role = role
        self.name = name
        self.observer = observer
        if role == "worker" { state.withLock { $0.worker = WorkerStatus() } }
    }

    private var now: Double { monotonicSeconds() - created }

    /// The board's state at this instant.
    public func snapshot() -> StatusSnapshot {
        let uptime = now
        return state.withLock { model in
            var step = model.step
            if var current = step, !current.ended {
                current.seconds = uptime - model.stepStart
                step = current
            }
            let nodes = model.nodes.sorted { a, b in
                (a.key == "master" ? 0 : 1, a.key) < (b.key == "master" ? 0 : 1, b.key)
            }.map { name, node in
                NodeStatus(
                    name: name, label: node.label, state: node.state, openReceipts: node.open,
                    retries: node.retries, duplicates: node.duplicates,
                    parcelsDone: node.parcelsDone, bytesOut: node.bytesOut, bytesIn: node.bytesIn)
            }
            var totals = model.earlier
            if let step { Self.add(step, to: &totals) }
            return StatusSnapshot(
                role: role, name: name, uptimeSeconds: uptime, step: step, stepsBegun: model.stepsBegun,
                nodes: nodes, receipts: model.receipts, chaos: model.chaos, compression: model.compression,
                throughput: model.throughput.elements,
                events: (model.events.elements + model.parcelEvents.elements).sorted { $0.seconds < $1.seconds },
                totals: totals, worker: model.worker)
        }
    }

    private static func add(_ step: LiveStepStatus, to totals: inout StatusTotals) {
        totals.parcelsCut += step.parcelsCut
        totals.parcelsDone += step.parcelsDone
        totals.bytesDone += step.bytesDone
        totals.bytesSentWire += step.bytesSentWire
        totals.bytesReceivedWire += step.bytesReceivedWire
        totals.retries += step.retries
        totals.duplicates += step.duplicates
        totals.taskErrors += step.taskErrors
        if step.ended {
            if step.state == "failed" { totals.stepsFailed += 1 } else { totals.stepsCompleted += 1 }
        }
    }

    // MARK: the master's step (internal: `StepRun` calls these)

    /// A step begins: its counters start from zero (the totals keep the earlier steps').
    func begin(step: UInt32, task: String, bytesTotal: UInt64?) {
        let at = now
        state.withLock { model in
            if let previous = model.step { Self.add(previous, to: &model.earlier) }
            model.step = LiveStepStatus(
                number: step, task: task, state: "connecting", ended: false, detail: "", seconds: 0, bytesDone: 0,
                bytesTotal: bytesTotal, parcelsCut: 0, parcelsDone: 0, bytesPerSecond: 0, etaSeconds: nil, retries: 0,
                duplicates: 0, taskErrors: 0, refusedResults: 0, speculativeCopies: 0, bytesSentWire: 0,
                bytesReceivedWire: 0, parcelsByNode: [:])
            model.stepStart = at
            model.stepsBegun += 1
            model.nodes = [:]
            model.receipts = ReceiptCounts()
            model.chaos = []
            model.compression = []
            model.throughput.removeAll()
            model.lastRate = (at, 0)
        }
    }

    /// What the step run samples under its lock about five times a second.
    struct StepSample {
        var bytesDone: UInt64
        var parcelsCut: Int
        var receipts: ReceiptCounts
        var retries: Int
        var duplicates: Int
        var taskErrors: Int
        var refusedResults: Int
        var speculativeCopies: Int
        var bytesSentWire: UInt64
        var bytesReceivedWire: UInt64
        /// Every node the step knows of now, with its state and open receipts.
        var nodes: [(name: String, label: String, state: String, open: Int)]
        var chaos: ChaosReport?
        /// `auto`'s current choice per link and direction (empty with a fixed codec).
        var compression: [CompressionChoice] = []
        /// Receipts taken back from each node to be sent again, and its results dropped as
        /// duplicates, in the step so far (absent: none).
        var nodeRetries: [String: Int] = [:]
        var nodeDuplicates: [String: Int] = [:]
    }

    /// Takes a sample of the running step (the caller's thread, every 0.2 s or so).
    func record(_ sample: StepSample) {
        let at = now
        state.withLock { model in
            guard var step = model.step, !step.ended else { return }
            step.bytesDone = sample.bytesDone
            step.parcelsCut = sample.parcelsCut
            step.parcelsDone = sample.receipts.closed
            step.retries = sample.retries
            step.duplicates = sample.duplicates
            step.taskErrors = sample.taskErrors
            step.refusedResults = sample.refusedResults
            step.speculativeCopies = sample.speculativeCopies
            step.bytesSentWire = sample.bytesSentWire
            step.bytesReceivedWire = sample.bytesReceivedWire
            step.seconds = at - model.stepStart
            let elapsed = at - model.lastRate.seconds
            if elapsed >= Self.throughputInterval {
                let rate = Double(sample.bytesDone &- model.lastRate.bytes) / elapsed
                step.bytesPerSecond = rate
                model.throughput.append(ThroughputPoint(seconds: step.seconds, bytesPerSecond: rate))
                model.lastRate = (at, sample.bytesDone)
            }
            if let total = step.bytesTotal, step.bytesPerSecond > 0 {
                step.etaSeconds = Double(total &- min(total, sample.bytesDone)) / step.bytesPerSecond
            } else {
                step.etaSeconds = nil
            }
            model.step = step
            model.receipts = sample.receipts
            var seen = Set<String>()
            for node in sample.nodes {
                seen.insert(node.name)
                var counters = model.nodes[node.name] ?? NodeCounters()
                counters.label = node.label
                // A worker that was up and is being reconnected to is down until it answers.
                counters.state = node.state == "connecting" && counters.wasUp ? "down" : node.state
                if node.state == "up" || node.state == "joined" { counters.wasUp = true }
                counters.open = node.open
                counters.retries = sample.nodeRetries[node.name, default: 0]
                counters.duplicates = sample.nodeDuplicates[node.name, default: 0]
                model.nodes[node.name] = counters
            }
            for name in model.nodes.keys where !seen.contains(name) {
                model.nodes[name]!.state = name == "master" ? "coordinating" : "down"
                model.nodes[name]!.open = 0
                model.nodes[name]!.retries = sample.nodeRetries[name, default: model.nodes[name]!.retries]
                model.nodes[name]!.duplicates = sample.nodeDuplicates[name, default: model.nodes[name]!.duplicates]
            }
            if let chaos = sample.chaos { model.chaos = Self.counts(chaos) }
            model.compression = sample.compression
        }
    }

    private static func counts(_ chaos: ChaosReport) -> [ChaosCount] {
        FaultKind.allCases.map {
            ChaosCount(
                kind: $0.rawValue, injected: chaos.injected[$0, default: 0], recovered: chaos.recovered[$0, default: 0])
        }
    }

    /// The step ended: its figures become the summary's (so `/api/status` equals the step summary).
    func end(summary: StepSummary, failure: String?, last sample: StepSample) {
        record(sample)
        let at = now
        state.withLock { model in
            guard var step = model.step else { return }
            step.ended = true
            step.state = failure != nil ? "failed" : summary.retries > 0 ? "completed-with-retries" : "completed"
            step.detail = failure ?? ""
            step.seconds = summary.seconds > 0 ? summary.seconds : at - model.stepStart
            step.parcelsCut = summary.parcels
            step.parcelsDone = summary.receiptsClosed
            step.retries = summary.retries
            step.duplicates = summary.duplicates
            step.taskErrors = summary.taskErrors
            step.refusedResults = summary.refusedResults
            step.speculativeCopies = summary.speculativeCopies
            step.bytesSentWire = summary.bytesSentWire
            step.bytesReceivedWire = summary.bytesReceivedWire
            step.parcelsByNode = summary.parcelsByNode
            step.bytesPerSecond = summary.throughput
            step.etaSeconds = failure == nil ? 0 : nil
            if failure == nil { step.bytesDone = summary.bytes }
            model.step = step
            if let chaos = summary.chaos { model.chaos = Self.counts(chaos) }
            for name in model.nodes.keys { model.nodes[name]!.open = 0 }
        }
    }

    /// A merge of one result took `seconds` (a merge thread, no other lock held).
    func recordMerge(seconds: Double) { observer?.observe(.merge, seconds: seconds) }

    private func note(_ event: FlowEvent, step: UInt32) {
        let record = StatusEvent(seconds: now, step: step, text: event.description)
        state.withLock { $0.events.append(record) }
    }

    // MARK: a single-node run (the CLI's `count` without workers: no `Master`, no step run)

    /// A single-node run begins: step 1, the master alone, running at once.
    func beginLocal(task: String, bytesTotal: UInt64?) {
        begin(step: 1, task: task, bytesTotal: bytesTotal)
        state.withLock { $0.step?.state = "running" }
    }

    /// A single-node run's progress (its progress callback, about five times a second).
    func record(progress: StepProgress) {
        record(Self.sample(progress))
    }

    /// A single-node run ended, after `progress` (its last figures), or failed.
    func endLocal(progress: StepProgress, failure: String?) {
        var summary = StepSummary()
        summary.step = 1
        summary.parcels = progress.parcelsCut
        summary.receiptsClosed = progress.parcelsDone
        summary.bytes = progress.bytesDone
        summary.seconds = progress.seconds
        summary.parcelsByNode = ["master": progress.parcelsDone]
        end(summary: summary, failure: failure, last: Self.sample(progress))
    }

    private static func sample(_ progress: StepProgress) -> StepSample {
        StepSample(
            bytesDone: progress.bytesDone, parcelsCut: progress.parcelsCut,
            receipts: ReceiptCounts(
                open: max(0, progress.parcelsCut - progress.parcelsDone), waiting: 0, closed: progress.parcelsDone),
            retries: 0, duplicates: 0, taskErrors: 0, refusedResults: 0, speculativeCopies: 0, bytesSentWire: 0,
            bytesReceivedWire: 0, nodes: [(name: "master", label: "", state: "up", open: 0)], chaos: nil)
    }

    // MARK: Interceptor

    /// Counts the bytes sent to `node`.
    public func sent(_ receipt: Receipt, to node: String, bytes: Int) {
        state.withLock { $0.nodes[node, default: NodeCounters()].bytesOut += UInt64(bytes) }
    }

    /// Counts the result bytes received from `node`.
    public func received(_ receipt: Receipt, from node: String, bytes: Int) {
        state.withLock { $0.nodes[node, default: NodeCounters()].bytesIn += UInt64(bytes) }
    }

    /// Counts the parcel done on `node`, records its time and the event.
    public func taskCompleted(_ receipt: Receipt, on node: String, seconds: Double) {
        observer?.observe(.task, seconds: seconds)
        let record = StatusEvent(
            seconds: now, step: receipt.step,
            text: FlowEvent.taskComplete(receipt, node: node, seconds: seconds).description)
        state.withLock { model in
            model.nodes[node, default: NodeCounters()].parcelsDone += 1
            model.parcelEvents.append(record)
        }
    }

    /// Records the event; `running` moves the step out of `connecting`.
    public func stepUpdated(step: UInt32, state update: StepUpdateState, detail: String) {
        note(.stepUpdate(step: step, state: update, detail: detail), step: step)
        guard update == .running else { return }
        state.withLock { model in
            if model.step?.number == step, model.step?.ended == false { model.step?.state = "running" }
        }
    }

    // MARK: a worker's own counters (internal: `Worker` calls these)

    /// A parcel arrived, `bytes` long on the wire.
    func workerReceived(bytes: Int) {
        state.withLock { model in
            model.worker?.bytesIn += UInt64(bytes)
            model.worker?.inFlight += 1
        }
    }

    /// A parcel's task ran for `seconds`, and failed or not.
    func workerProcessed(seconds: Double, failed: Bool) {
        observer?.observe(.task, seconds: seconds)
        state.withLock { model in
            if failed { model.worker?.taskErrors += 1 } else { model.worker?.parcelsDone += 1 }
            model.worker?.inFlight -= 1
        }
    }

    /// An answer of `bytes` left for a master.
    func workerSent(bytes: Int) { state.withLock { $0.worker?.bytesOut += UInt64(bytes) } }

    /// Masters connected and authenticated now; `event` says what changed.
    func workerMasters(_ count: Int, event: String) {
        let record = StatusEvent(seconds: now, step: 0, text: event)
        state.withLock { model in
            model.worker?.masters = count
            model.events.append(record)
        }
    }
}

internal import CElasticFlow
import Foundation

/// The master of a cluster: cuts the sources into parcels, hands each to the node with the fewest
/// open receipts (its own threads included, when `masterProcesses`), and aggregates results as
/// they return. Every worker runs the same program, so tasks are named, not shipped.
///
/// Threads: the C event loop's thread owns the sockets; a pool of `masterThreads` threads cuts,
/// compresses and (for the master's own share) processes parcels; the caller's thread waits and
/// reports progress. Shared state is guarded by one condition lock, taken a few times per parcel.
public final class Master: @unchecked Sendable {
    // `interceptors` changes only between steps (documented on `add`).
    public let configuration: ClusterConfiguration
    private let tasks: TaskRegistry
    private var interceptors: [any Interceptor] = []

    public init(configuration: ClusterConfiguration, tasks: TaskRegistry = .standard) {
        self.configuration = configuration
        self.tasks = tasks
    }

    /// Adds an interceptor; it sees the events of every later step. Not while a step runs.
    public func add(_ interceptor: any Interceptor) { interceptors.append(interceptor) }

    /// Runs one step to completion and returns its output.
    /// - Parameters:
    ///   - task: the registered name of the task every node runs on the parcels.
    ///   - progress: called about five times a second on the calling thread.
    /// - Throws: `ElasticFlowError` — unreadable sources, unreachable or refused workers, a parcel
    ///   that failed too often.
    public func run(
        task: String, sources: [DataSource], options: TaskOptions = .init(), step: UInt32 = 1,
        progress: ((StepProgress) -> Void)? = nil
    ) throws(ElasticFlowError) -> StepReport {
        try run(
            StepPlan(step: step, task: task, sources: sources, options: options), progress: progress,
            cancellation: nil)
    }

    func run(_ plan: StepPlan, progress: ((StepProgress) -> Void)?, cancellation: CancellationFlag?)
        throws(ElasticFlowError) -> StepReport
    {
        let run = try StepRun(
            configuration: configuration, registry: tasks, plan: plan, interceptors: interceptors,
            cancellation: cancellation)
        return try run.execute(progress: progress)
    }
}

/// What one step is to do, and what a resumed step already has.
struct StepPlan {
    var step: UInt32
    var task: String
    var sources: [DataSource]
    var options: TaskOptions
    /// Receipts already aggregated (a resumed step): their parcels are cut but not sent.
    var alreadyAggregated: Set<UInt64> = []
    /// The aggregate of those receipts.
    var restoredAggregate: [UInt8]?
    /// Persists the step as it goes (nil: nothing is persisted).
    var journal: StepJournalWriter?
}

/// What the master persists while a step runs (see `StepJournal`).
protocol StepJournalWriter: AnyObject, Sendable {
    /// A parcel was cut (before it is sent anywhere; again on a resumed step).
    func cut(_ receipt: Receipt) throws(ElasticFlowError)
    /// Every parcel has been cut.
    func allCut() throws(ElasticFlowError)
    /// Time for a checkpoint: every `interval` aggregated receipts or seconds.
    var checkpointEvery: (receipts: Int, seconds: Double) { get }
    /// Persists the aggregate with the receipts it contains.
    func checkpoint(aggregated: Set<UInt64>, aggregate: [UInt8]) throws(ElasticFlowError)
}

/// Set from any thread to stop a running step: it ends within about 0.2 s as cancelled (its
/// journal, if any, keeps what was aggregated, so `retry` finishes it later).
public final class CancellationFlag: @unchecked Sendable {
    // Guarded by lock.
    private let lock = NSLock()
    private var value = false

    public init() {}

    public var isCancelled: Bool { lock.withLock { value } }
    public func cancel() { lock.withLock { value = true } }
}

/// One step on the cluster, from connecting to the workers to tearing the connections down.
final class StepRun: @unchecked Sendable {
    // Immutable after init.
    let configuration: ClusterConfiguration
    let plan: StepPlan
    var step: UInt32 { plan.step }
    let task: any ParcelTask
    let interceptors: [any Interceptor]
    let loop: EventLoop
    let pool: WorkerPool
    let totalBytes: UInt64?
    let chaos: ChaosSettings?
    let cancellation: CancellationFlag?
    static let masterNode = "master"
    /// Parcels the master's own threads may hold: all of them. The master then keeps as much work
    /// as it can process itself — no compression, no copy, no merge of a serialized table —
    /// and workers get what its threads cannot take.
    var masterInFlight: Int { max(1, configuration.masterThreads) }

    // Guarded by `lock`.
    private let lock = NSCondition()
    private let cutter: ParcelCutter
    private let aggregation: any TaskAggregation
    private var ledger = Ledger()
    private var nodes: [Scheduler.Node] = []
    private var links: [ConnectionID: Link] = [:]  // by current connection
    private var retryQueue: [UInt64] = []
    private var parcels: [UInt64: ParcelBuffer] = [:]  // raw bytes of unclosed receipts
    private var distributedAt: [UInt64: Double] = [:]
    private var taskFailures: [UInt64: Int] = [:]
    private var failedOn: [UInt64: Set<String>] = [:]
    private var sequence: UInt64 = 0
    private var exhausted = false
    private var finished = false
    private var started = false
    private var failure: ElasticFlowError?
    private var summary = StepSummary()
    private var bytesDone: UInt64 = 0
    private var heartbeatTimer = TimerID.unset
    private var timers: [TimerID: @Sendable () -> Void] = [:]
    private var faults: [(kind: FaultKind, receipts: [UInt64])] = []
    /// Guarded by `aggregationLock` (with `aggregation` itself): the receipts whose results the
    /// aggregate holds, so a checkpoint takes both at one instant.
    private var aggregatedSet: Set<UInt64> = []
    /// Results claimed (their receipts closed) but still being merged.
    private var absorbing = 0
    private var sinceCheckpoint = 0
    private var lastCheckpoint = monotonicSeconds()
    private var listener = ListenerID.unset
    /// Wakes the caller's thread when the step finishes or fails (the shared condition would wake
    /// it on every parcel event).
    private let ended = DispatchSemaphore(value: 0)

    // Buffers, guarded by `bufferLock` — its own lock, because the loop's release callbacks take it
    // and a release may run inside a send or close made while `lock` is held (order: lock, then
    // bufferLock; never the other way). A parcel sent without compression is written straight from
    // its buffer: the buffer goes back to the free list only when its receipt is closed *and* no
    // send of it is still queued (a node presumed dead may still have one).
    private let bufferLock = NSLock()
    /// Serializes merges into the aggregation and checkpoints of it (order: `lock`, then this).
    private let aggregationLock = NSLock()
    private var freeParcels: [ParcelBuffer] = []
    private var freeWire: [ParcelBuffer] = []
    private var inTransit: [ObjectIdentifier: Int] = [:]
    private var retired: [ObjectIdentifier: ParcelBuffer] = [:]

    // The loop thread's scratch for decompressing results (loop thread only).
    private let resultScratch = ParcelBuffer(capacity: 1 << 20)
    private let loopCodec: Codec

    /// Every field is read and written under `StepRun.lock`.
    final class Link: @unchecked Sendable {
        enum Phase { case connecting, awaitingHello, awaitingWelcome, ready, gone }
        let address: NodeAddress
        /// The worker connected to us (`worker --join`): it reconnects itself.
        let joined: Bool
        var phase = Phase.connecting
        var nonce: [UInt8] = []
        var lastSeen = monotonicSeconds()
        /// Silent past the heartbeat time-out: its parcels went elsewhere; it may still answer.
        var suspect = false
        /// Said BYE: no more parcels; its connection ends normally.
        var leaving = false
        /// We broke the connection on purpose (chaos): its close is not the worker's doing.
        var closingOnPurpose = false
        var reconnectDelay = 0.05
        var everReady = false
        let name: String
        init(address: NodeAddress, joined: Bool, name: String) {
            self.address = address
            self.joined = joined
            self.name = name
        }
    }

    init(
        configuration: ClusterConfiguration, registry: TaskRegistry, plan: StepPlan, interceptors: [any Interceptor],
        cancellation: CancellationFlag?
    ) throws(ElasticFlowError) {
        guard configuration.masterProcesses || !configuration.workers.isEmpty || configuration.listen != nil else {
            // (A master that only listens waits for workers to join, and takes over after the
            // heartbeat time-out if none comes.)
            throw .cluster("no workers and the master does not process parcels: nothing can run the step")
        }
        try configuration.validate()
        self.configuration = configuration
        self.plan = plan
        self.interceptors = interceptors
        self.cancellation = cancellation
        chaos = configuration.chaos?.isActive == true ? configuration.chaos : nil
        task = try registry.task(named: plan.task)
        cutter = try ParcelCutter(sources: plan.sources, parcelSize: configuration.parcelSize)
        do {
            aggregation = try task.makeAggregation(options: plan.options)
            if let restored = plan.restoredAggregate { try aggregation.restore(from: restored) }
        } catch let error as ElasticFlowError {
            throw error
        } catch {
            throw .task(name: plan.task, message: "\(error)")
        }
        aggregatedSet = plan.alreadyAggregated
        totalBytes = Self.size(of: plan.sources)
        loopCodec = try Codec()
        // Enough queue for every in-flight parcel of a worker: the in-flight limit is the real bound.
        let highWater = max(64 << 20, (configuration.inFlight + 1) * (configuration.parcelSize + (1 << 20)))
        loop = try EventLoop(maxPayload: configuration.maxPayload, sendHighWater: highWater)
        pool = try WorkerPool(
            threads: configuration.masterThreads, name: "ef-master", scratchCapacity: configuration.parcelSize)
        summary.step = plan.step
        summary.task = plan.task
        summary.compression = configuration.compression
        // Under chaos the master only coordinates (unless every worker is gone), so that every
        // parcel crosses the wire and meets the injected faults.
        if configuration.masterProcesses && chaos == nil {
            nodes.append(.init(name: Self.masterNode, inFlightLimit: masterInFlight))
        }
    }

    private static func size(of sources: [DataSource]) -> UInt64? {
        var total: UInt64 = 0
        for source in sources {
            guard case .file(let path) = source,
                let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                let size = attributes[.size] as? NSNumber
            else { return nil }
            total += size.uint64Value
        }
        return total
    }

    // MARK: the caller's thread

    func execute(progress: ((StepProgress) -> Void)?) throws(ElasticFlowError) -> StepReport {
        let startedAt = monotonicSeconds()
        loop.handler = self
        // Listening and connecting before the loop thread starts is allowed (ef_loop's set-up
        // rule), and makes every link known before we wait for the handshakes.
        if let listen = configuration.listen {
            listener = try loop.listen(host: listen.host, port: listen.port).listener
        }
        lock.lock()
        connectAll()
        lock.unlock()
        loop.start(name: "ef-master-loop")
        defer { tearDown() }

        // Every configured worker must be ready (or the step fails) before parcels go out.
        lock.lock()
        let deadline = Date(timeIntervalSinceNow: configuration.connectTimeout)
        while failure == nil && links.values.contains(where: { !$0.joined && $0.phase != .ready }) {
            if !lock.wait(until: deadline) {
                let late = links.values.filter { !$0.joined && $0.phase != .ready }.map(\.name).sorted()
                failure = .cluster(
                    "worker(s) \(late.joined(separator: ", ")) did not complete the handshake within "
                        + "\(format3(configuration.connectTimeout)) s")
            }
        }
        if let failure {
            lock.unlock()
            throw failure
        }
        started = true
        for link in links.values { link.everReady = true }
        emit(.stepUpdate(step: step, state: .running, detail: "\(nodes.count) node(s), \(plan.task)"))
        lock.unlock()

        for _ in 0..<pool.size { pool.submit { [self] context in prepareParcels(context) } }

        lock.lock()
        while failure == nil && !finished {
            lock.unlock()
            _ = ended.wait(timeout: .now() + 0.2)
            lock.lock()
            if cancellation?.isCancelled == true { fail(.cluster("step \(step) cancelled")) }
            checkpointIfDue(force: false)
            if let progress {
                let snapshot = StepProgress(
                    bytesDone: bytesDone, bytesTotal: totalBytes, parcelsDone: ledger.closedCount,
                    parcelsCut: summary.parcels, seconds: monotonicSeconds() - startedAt)
                lock.unlock()
                progress(snapshot)
                lock.lock()
            }
        }
        checkpointIfDue(force: true)
        summary.seconds = monotonicSeconds() - startedAt
        summary.receiptsClosed = ledger.closedCount
        summary.duplicates = ledger.duplicates
        summary.chaos = chaosReport()
        if let failure {
            emit(.stepUpdate(step: step, state: .failed, detail: failure.description))
            lock.unlock()
            throw failure
        }
        emit(.stepUpdate(step: step, state: summary.retries > 0 ? .completedWithRetries : .completed, detail: ""))
        let report = summary
        lock.unlock()
        do {
            return StepReport(output: try aggregationLock.withLock { try aggregation.output() }, summary: report)
        } catch let error as ElasticFlowError {
            throw error
        } catch {
            throw .task(name: plan.task, message: "\(error)")
        }
    }

    /// The summary so far (for a failed step's report).
    var partialSummary: StepSummary { lock.withLock { summary } }

    private func tearDown() {
        lock.lock()
        if !finished && failure == nil { failure = .cluster("step abandoned") }
        lock.unlock()
        pool.waitUntilIdle()
        let closed = DispatchSemaphore(value: 0)
        loop.post { [self] in
            lock.lock()
            if listener != .unset { loop.unlisten(listener) }
            for (connection, link) in links where link.phase != .gone {
                if link.phase == .ready { loop.send(connection, type: FrameType.bye.rawValue, bytes: []) }
                loop.close(connection, flush: true)
            }
            lock.unlock()
            closed.signal()
        }
        closed.wait()
        // Give the BYEs a moment to leave; a peer that does not read cannot hold us.
        let deadline = monotonicSeconds() + 1
        while monotonicSeconds() < deadline {
            lock.lock()
            let open = links.values.contains { $0.phase != .gone }
            lock.unlock()
            if !open { break }
            usleep(2000)
        }
        loop.stopAndJoin()
        pool.shutdown()
    }

    // MARK: under lock

    private func emit(_ event: FlowEvent) {
        for interceptor in interceptors { interceptor.intercept(event) }
    }

    private func fail(_ error: ElasticFlowError) {
        if failure == nil {
            failure = error
            ended.signal()
        }
        lock.broadcast()
    }

    private func checkFinished() {
        if !finished && exhausted && retryQueue.isEmpty && ledger.openCount == 0 && absorbing == 0 {
            finished = true
            ended.signal()
            lock.broadcast()
        }
    }

    private func checkpointIfDue(force: Bool) {
        guard let journal = plan.journal, sinceCheckpoint > 0 || force else { return }
        let every = journal.checkpointEvery
        guard force || sinceCheckpoint >= every.receipts || monotonicSeconds() - lastCheckpoint >= every.seconds
        else { return }
        do {
            let (snapshot, aggregated) = try aggregationLock.withLock { (try aggregation.snapshot(), aggregatedSet) }
            try journal.checkpoint(aggregated: aggregated, aggregate: snapshot)
        } catch let error as ElasticFlowError {
            fail(error)
        } catch {
            fail(.task(name: plan.task, message: "cannot checkpoint: \(error)"))
        }
        sinceCheckpoint = 0
        lastCheckpoint = monotonicSeconds()
    }

    private func chaosReport() -> ChaosReport? {
        guard chaos != nil else { return nil }
        var report = ChaosReport()
        for fault in faults {
            report.injected[fault.kind, default: 0] += 1
            if fault.receipts.allSatisfy({ ledger.state(of: $0) == .closed }) {
                report.recovered[fault.kind, default: 0] += 1
            }
        }
        return report
    }

    // MARK: pool threads: cut, compress, process locally

    /// Takes the next receipt for `node`: a retry that did not fail there, else a new parcel.
    /// - Returns: nil when there is nothing to take now.
    private func nextReceipt(for node: String) -> UInt64? {
        if let index = retryQueue.firstIndex(where: { failedOn[$0]?.contains(node) != true })
            ?? (exhausted ? retryQueue.indices.first : nil)
        {
            let retry = retryQueue.remove(at: index)
            guard case .waiting = ledger.state(of: retry) else { return nextReceipt(for: node) }
            summary.retries += 1
            return retry
        }
        while !exhausted {
            let buffer = takeParcelBuffer()
            let origin: ParcelOrigin?
            do {
                origin = try cutter.next(into: buffer)
            } catch {
                fail(error)
                return nil
            }
            guard let origin else {
                recycleParcel(buffer)
                exhausted = true
                do {
                    try plan.journal?.allCut()
                } catch {
                    fail(error)
                    return nil
                }
                checkFinished()
                return nil
            }
            sequence += 1
            let receipt = Receipt(
                step: step, sequence: sequence, partition: UInt32(origin.source), offset: origin.offset,
                length: UInt64(origin.length), items: lineCount(buffer.bytes), checksum: crc32c(buffer.bytes))
            summary.parcels += 1
            summary.bytes += UInt64(origin.length)
            do {
                // On a resumed step this also checks the parcel against the journal's receipt.
                try plan.journal?.cut(receipt)
            } catch {
                fail(error)
                return nil
            }
            if plan.alreadyAggregated.contains(sequence) {
                // Aggregated before a restart: counted, not sent again.
                ledger.restoreClosed(receipt)
                bytesDone += receipt.length
                recycleParcel(buffer)
                checkFinished()
                continue
            }
            parcels[sequence] = buffer
            ledger.register(receipt)
            return sequence
        }
        return nil
    }

    private func prepareParcels(_ context: ThreadContext) {
        while true {
            lock.lock()
            var chosen: Scheduler.Node?
            var sequenceNumber: UInt64?
            while true {
                // Threads stay until the step ends: a node may go down after the last parcel was
                // cut, and its receipts come back to be sent again.
                if failure != nil || finished {
                    lock.unlock()
                    return
                }
                if let node = Scheduler().pick(from: nodes, ledger: ledger), let next = nextReceipt(for: node.name) {
                    chosen = node
                    sequenceNumber = next
                    break
                }
                if failure != nil || finished { continue }
                lock.wait()
            }
            let node = chosen!
            let receipt = ledger.receipt(sequenceNumber!)!
            ledger.open(receipt, on: node.name)
            let attempt = ledger.attempts(receipt.sequence)
            distributedAt[receipt.sequence] = monotonicSeconds()
            emit(.distributed(receipt, node: node.name))
            let buffer = parcels[receipt.sequence]!
            let connection = links.first { $0.value.name == node.name && $0.value.phase == .ready }?.key
            lock.unlock()

            if node.name == Self.masterNode {
                processLocally(receipt, buffer: buffer)
            } else if let connection {
                send(receipt, attempt: attempt, buffer: buffer, to: connection, node: node.name, context: context)
            } else {
                lock.lock()
                requeue(receipt.sequence, from: node.name)
                lock.unlock()
            }
        }
    }

    private func processLocally(_ receipt: Receipt, buffer: ParcelBuffer) {
        lock.lock()
        emit(.sent(receipt, node: Self.masterNode, bytes: buffer.count))
        lock.unlock()
        do {
            let result = try task.process(ParcelBytes(buffer.bytes), options: plan.options)
            deliver(result, for: receipt.sequence, from: Self.masterNode, wireBytes: result.count)
        } catch {
            taskFailed(receipt.sequence, on: Self.masterNode, message: "\(error)")
        }
    }

    private func send(
        _ receipt: Receipt, attempt: Int, buffer: ParcelBuffer, to connection: ConnectionID, node: String,
        context: ThreadContext
    ) {
        let compression = configuration.compression
        var payload = buffer
        var recycle: ParcelBuffer?
        if compression != .none {
            bufferLock.lock()
            let wire = freeWire.popLast() ?? ParcelBuffer(capacity: ef_codec_bound(compression.codecID, buffer.count))
            bufferLock.unlock()
            do {
                _ = try context.codec.compress(buffer.bytes, into: wire, with: compression)
            } catch {
                lock.lock()
                fail(error)
                lock.unlock()
                return
            }
            payload = wire
            recycle = wire
        }
        let frame = payload
        let frameBytes = payload.count  // read now: a recycled buffer may be reused once sent
        let recycled = recycle
        let flags = parcelFlags(compressed: compression != .none, attempt: attempt)
        let codec = UInt8(compression.codecID)
        let fault = chaos?.fault(
            at: .masterSendsParcel, step: step, sequence: receipt.sequence, attempt: attempt,
            maxAttempts: configuration.maxAttempts)
        let transmit: @Sendable () -> Void = { [self] in
            var status: Int32
            lock.lock()
            let link = links[connection]
            lock.unlock()
            if fault == .byteFlip, frame.count > 0 {
                // Flip one byte after the checksum was taken: the worker's parser must reject it.
                var corrupted = Array(frame.bytes)
                corrupted[Int(receipt.sequence % UInt64(corrupted.count))] ^= 0x20
                status = corrupted.withUnsafeBytes { sent in
                    ef_loop_send_tampered(
                        loop.handle, connection.rawValue, FrameType.parcel.rawValue, flags, codec, step,
                        receipt.sequence,
                        frame.bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                        sent.baseAddress?.assumingMemoryBound(to: UInt8.self), sent.count)
                }
                link?.closingOnPurpose = true
                if let recycled { recycleWire(recycled) }
            } else {
                // No copy: the loop writes straight from the parcel (or its compressed copy).
                if recycled == nil { markInTransit(buffer) }
                status = loop.sendReference(
                    connection, type: FrameType.parcel.rawValue, flags: flags, codec: codec, aux: step,
                    id: receipt.sequence, payload: frame.bytes
                ) { [self] in
                    if let recycled { recycleWire(recycled) } else { sent(buffer) }
                }
                if status != 0 {
                    if let recycled { recycleWire(recycled) } else { sent(buffer) }
                }
            }
            lock.lock()
            if status == 0 {
                summary.bytesSentRaw += receipt.length
                summary.bytesSentWire += UInt64(frameBytes)
                emit(.sent(receipt, node: node, bytes: frameBytes))
                if let fault { faults.append((fault, [receipt.sequence])) }
            } else {
                requeue(receipt.sequence, from: node)
            }
            lock.unlock()
            if fault == .connectionDrop, status == 0 {
                // Drop the connection right after the parcel left: its parcels go elsewhere.
                link?.closingOnPurpose = true
                loop.close(connection, flush: true)
            }
        }
        if fault == .frameDelay {
            let delay = chaos!.delayMilliseconds(step: step, sequence: receipt.sequence, attempt: attempt)
            loop.post { [self] in
                let timer = loop.addTimer(milliseconds: delay, repeats: false)
                lock.lock()
                timers[timer] = transmit
                lock.unlock()
            }
        } else {
            loop.post(transmit)
        }
    }

    private func recycleWire(_ buffer: ParcelBuffer) {
        bufferLock.withLock { freeWire.append(buffer) }
    }

    private func takeParcelBuffer() -> ParcelBuffer {
        bufferLock.withLock { freeParcels.popLast() } ?? ParcelBuffer(capacity: configuration.parcelSize)
    }

    private func markInTransit(_ buffer: ParcelBuffer) {
        bufferLock.withLock { inTransit[ObjectIdentifier(buffer), default: 0] += 1 }
    }

    /// A queued send of the parcel's own bytes is done (written, or its connection gone).
    private func sent(_ buffer: ParcelBuffer) {
        bufferLock.withLock {
            let id = ObjectIdentifier(buffer)
            let left = inTransit[id, default: 1] - 1
            inTransit[id] = left > 0 ? left : nil
            if left <= 0, let waiting = retired.removeValue(forKey: id) { freeParcels.append(waiting) }
        }
    }

    /// The receipt is closed: the buffer is free once no send of it is queued any more.
    private func recycleParcel(_ buffer: ParcelBuffer) {
        bufferLock.withLock {
            let id = ObjectIdentifier(buffer)
            if inTransit[id] != nil { retired[id] = buffer } else { freeParcels.append(buffer) }
        }
    }

    /// Takes a receipt back from a node that will not answer it, to send it again.
    private func requeue(_ sequence: UInt64, from node: String) {
        if case .open(node, _) = ledger.state(of: sequence) {
            ledger.takeBack(sequence)
            retryQueue.append(sequence)
            lock.broadcast()
        }
    }

    // MARK: results (loop thread for remote ones, pool thread for the master's own)

    private func deliver(_ result: [UInt8], for sequence: UInt64, from node: String, wireBytes: Int) {
        lock.lock()
        guard let receipt = ledger.receipt(sequence) else {
            lock.unlock()
            return
        }
        emit(.received(receipt, node: node, bytes: wireBytes))
        if node != Self.masterNode { summary.bytesReceivedWire += UInt64(wireBytes) }
        // Exactly once: the first result closes the receipt here, before it is merged; any later
        // one (a duplicate, a late answer) finds it closed and is dropped.
        guard ledger.close(sequence) else {
            lock.unlock()
            return
        }
        retryQueue.removeAll { $0 == sequence }
        absorbing += 1
        lock.unlock()

        // The merge runs outside the step lock, so scheduling and other results go on meanwhile;
        // `aggregationLock` keeps merges (and checkpoints) one at a time.
        var failed: (any Error)?
        aggregationLock.withLock {
            do {
                try aggregation.absorb(result)
                aggregatedSet.insert(sequence)
            } catch {
                failed = error
            }
        }

        lock.lock()
        defer { lock.unlock() }
        absorbing -= 1
        if let failed {
            fail(.cluster("the result of receipt \(receipt) from \(node) cannot be aggregated: \(failed)"))
            return
        }
        sinceCheckpoint += 1
        bytesDone += receipt.length
        summary.parcelsByNode[node, default: 0] += 1
        emit(.aggregated(receipt))
        let seconds = monotonicSeconds() - (distributedAt.removeValue(forKey: sequence) ?? monotonicSeconds())
        emit(.taskComplete(receipt, node: node, seconds: seconds))
        if let buffer = parcels.removeValue(forKey: sequence) { recycleParcel(buffer) }
        checkFinished()
        lock.broadcast()
    }

    private func taskFailed(_ sequence: UInt64, on node: String, message: String, injected: Bool = false) {
        lock.lock()
        defer { lock.unlock() }
        summary.taskErrors += 1
        guard case .open(node, _) = ledger.state(of: sequence), let receipt = ledger.receipt(sequence) else { return }
        ledger.takeBack(sequence)
        if injected { faults.append((.taskRaises, [sequence])) }
        let failures = taskFailures[sequence, default: 0] + 1
        taskFailures[sequence] = failures
        failedOn[sequence, default: []].insert(node)
        if failures >= configuration.maxAttempts {
            fail(.cluster("receipt \(receipt) failed \(failures) times; last on \(node): \(message)"))
        } else {
            retryQueue.append(sequence)
            lock.broadcast()
        }
    }

    /// A node is gone (or presumed dead): nothing more goes to it and its open receipts go to the
    /// others. When no node is left, the master processes the rest itself.
    private func nodeDown(_ link: Link, reason: String) {
        nodes.removeAll { $0.name == link.name }
        for receipt in ledger.openReceipts(on: link.name) { requeue(receipt.sequence, from: link.name) }
        guard !finished && failure == nil && started else { return }
        emit(.stepUpdate(step: step, state: .nodeDown, detail: "\(link.name): \(reason)"))
        if nodes.isEmpty { scheduleTakeover() }
        lock.broadcast()
    }

    /// With no node left, the master processes the rest itself — unless a worker comes back
    /// (reconnects or joins) within the heartbeat time-out. The step never hangs either way.
    private func scheduleTakeover() {
        let timer = loop.addTimer(milliseconds: UInt64(configuration.heartbeatTimeout * 1000), repeats: false)
        timers[timer] = { [self] in
            lock.lock()
            if nodes.isEmpty && !finished && failure == nil {
                nodes.append(.init(name: Self.masterNode, inFlightLimit: masterInFlight))
                emit(.stepUpdate(step: step, state: .masterTakesOver, detail: "no worker is left"))
                lock.broadcast()
            }
            lock.unlock()
        }
    }

    private func nodeUp(_ link: Link) {
        guard !nodes.contains(where: { $0.name == link.name }) else { return }
        // Workers join the end of the list; the master (when it processes parcels) stays first, so
        // ties go to it: a parcel it processes itself costs no compression, copy or merge of a
        // serialized table, and workers take what its threads cannot.
        nodes.append(.init(name: link.name, inFlightLimit: configuration.inFlight))
        if !configuration.masterProcesses || chaos != nil {
            nodes.removeAll { $0.name == Self.masterNode }  // it only stood in for the lost workers
        }
        if started { emit(.stepUpdate(step: step, state: .nodeUp, detail: link.name)) }
        lock.broadcast()
    }
}

// MARK: the loop thread: connections and frames

extension StepRun: EventLoopHandler {
    /// Connects to every configured worker (under lock).
    fileprivate func connectAll() {
        for address in configuration.workers {
            connect(Link(address: address, joined: false, name: address.description))
        }
        let interval = UInt64(
            max(0.01, min(configuration.heartbeatInterval, configuration.heartbeatTimeout / 3)) * 1000)
        heartbeatTimer = loop.addTimer(milliseconds: interval, repeats: true)
    }

    private func connect(_ link: Link) {
        do {
            let connection = try loop.connect(host: link.address.host, port: link.address.port)
            link.phase = .connecting
            links[connection] = link
        } catch {
            if !started {
                fail(.cluster("cannot reach worker \(link.name): \(error)"))
            } else {
                scheduleReconnect(link)
            }
        }
    }

    private func scheduleReconnect(_ link: Link) {
        guard !link.joined, !link.leaving, !finished, failure == nil else { return }
        let delay = UInt64(link.reconnectDelay * 1000)
        link.reconnectDelay = min(1.0, link.reconnectDelay * 2)
        let timer = loop.addTimer(milliseconds: delay, repeats: false)
        timers[timer] = { [self] in
            lock.lock()
            if !finished && failure == nil { connect(link) }
            lock.unlock()
        }
    }

    func accepted(_ connection: ConnectionID) {
        lock.lock()
        defer { lock.unlock() }
        guard !finished, failure == nil else {
            loop.close(connection, flush: false)
            return
        }
        let peer = loop.peer(connection)
        let link = Link(
            address: (try? NodeAddress(parsing: peer)) ?? NodeAddress(host: peer, port: 0), joined: true,
            name: "joined:\(peer)")
        links[connection] = link
        greet(link, connection)
    }

    func connected(_ connection: ConnectionID, status: Int32, errno: Int32) {
        lock.lock()
        defer { lock.unlock() }
        guard let link = links[connection] else { return }
        if status != 0 {
            let why = status == Int32(EF_ESYS) ? String(cString: strerror(errno)) : "\(CoreErrorCode(rawValue: status))"
            links[connection] = nil
            link.phase = .gone
            if !started {
                fail(.cluster("cannot reach worker \(link.name): \(why)"))
            } else {
                scheduleReconnect(link)
            }
            return
        }
        greet(link, connection)
    }

    private func greet(_ link: Link, _ connection: ConnectionID) {
        do {
            link.nonce = try Authentication.nonce()
        } catch {
            fail(error)
            return
        }
        let hello = Hello(
            role: Hello.masterRole, nonce: link.nonce, threads: configuration.masterThreads,
            name: "master@\(ProcessInfo.processInfo.hostName)")
        link.phase = .awaitingHello
        link.lastSeen = monotonicSeconds()
        loop.send(connection, type: FrameType.hello.rawValue, bytes: hello.encoded())
    }

    func closed(_ connection: ConnectionID, reason: Int32, errno: Int32) {
        lock.lock()
        defer { lock.unlock() }
        guard let link = links.removeValue(forKey: connection) else { return }
        let previous = link.phase
        link.phase = .gone
        let why: String
        switch reason {
        case 0: why = "closed the connection"
        case Int32(EF_ESYS): why = String(cString: strerror(errno))
        default: why = "\(CoreErrorCode(rawValue: reason))"
        }
        if previous == .ready {
            if chaos != nil && !link.closingOnPurpose && !link.leaving {
                // The worker broke the link: a corrupted frame (caught by its checksum) or a drop.
                let kind: FaultKind = reason == Int32(EF_ECHECKSUM) ? .byteFlip : .connectionDrop
                faults.append((kind, ledger.openReceipts(on: link.name).map(\.sequence)))
            } else if link.closingOnPurpose, let index = faults.lastIndex(where: { $0.kind != .taskRaises }) {
                // The fault we injected took these receipts down with it.
                faults[index].receipts += ledger.openReceipts(on: link.name).map(\.sequence)
            }
            link.closingOnPurpose = false
            nodeDown(link, reason: why)
            scheduleReconnect(link)
        } else if previous != .gone {
            if !started && !link.joined {
                fail(.cluster("worker \(link.name) closed the connection during the handshake: \(why)"))
            } else {
                scheduleReconnect(link)
            }
        }
    }

    func timerFired(_ timer: TimerID) {
        lock.lock()
        if let action = timers.removeValue(forKey: timer) {
            lock.unlock()
            action()
            return
        }
        defer { lock.unlock() }
        guard timer == heartbeatTimer else { return }
        let now = monotonicSeconds()
        for (connection, link) in links where link.phase == .ready {
            let silence = now - link.lastSeen
            if silence > 3 * configuration.heartbeatTimeout {
                loop.close(connection, flush: false)  // on_close: gone for good
            } else if silence > configuration.heartbeatTimeout && !link.suspect {
                // Presumed dead: its parcels go elsewhere now; a late answer is still welcome
                // (and dropped if its receipt was closed meanwhile).
                link.suspect = true
                nodeDown(link, reason: "silent for \(format3(silence)) s")
            }
            loop.send(connection, type: FrameType.heartbeat.rawValue, bytes: [])
        }
        sendOverdueParcelsAgain(now: now)
    }

    /// A parcel unanswered for longer than `parcelTimeout` on a worker that is still alive (a task
    /// stuck, or a node far slower than the rest) is sent again to another node: the first result
    /// is aggregated, the other dropped as a duplicate. So a step never waits forever. (Under lock.)
    private func sendOverdueParcelsAgain(now: Double) {
        guard let limit = configuration.parcelTimeout, started, !finished, failure == nil else { return }
        var overdue = false
        for (sequence, sentAt) in distributedAt where now - sentAt > limit {
            guard case .open(let node, _) = ledger.state(of: sequence), node != Self.masterNode,
                let receipt = ledger.receipt(sequence)
            else { continue }
            ledger.takeBack(sequence)
            distributedAt[sequence] = nil
            failedOn[sequence, default: []].insert(node)  // prefer another node this time
            retryQueue.append(sequence)
            emit(
                .stepUpdate(
                    step: step, state: .parcelOverdue,
                    detail: "\(receipt) on \(node) for \(format3(now - sentAt)) s: sent again"))
            overdue = true
        }
        if overdue { lock.broadcast() }
    }

    func received(_ frame: IncomingFrame, on connection: ConnectionID) {
        lock.lock()
        guard let link = links[connection] else {
            lock.unlock()
            return
        }
        link.lastSeen = monotonicSeconds()
        if link.suspect && link.phase == .ready {
            link.suspect = false
            if !link.leaving { nodeUp(link) }
        }
        switch (FrameType(rawValue: frame.type), link.phase) {
        case (.hello, .awaitingHello):
            handshake(Array(frame.payload), link: link, connection: connection)
            lock.unlock()
        case (.welcome, .awaitingWelcome):
            link.phase = .ready
            link.reconnectDelay = 0.05
            if started { link.everReady = true }
            let announcement = StepAnnouncement(
                step: step, task: plan.task, options: plan.options, compression: configuration.compression.description,
                chaos: chaos, maxAttempts: configuration.maxAttempts)
            let payload = (try? JSONEncoder().encode(announcement)).map { Array($0) } ?? []
            loop.send(connection, type: FrameType.step.rawValue, aux: step, id: 0, bytes: payload)
            nodeUp(link)
            lock.unlock()
        case (.result, .ready):
            if frame.flags & frameFlagFaultDuplicate != 0 { faults.append((.duplicateResult, [frame.id])) }
            if frame.flags & frameFlagFaultDelayed != 0 { faults.append((.frameDelay, [frame.id])) }
            lock.unlock()
            let wireBytes = frame.payload.count
            var result: [UInt8]
            if frame.flags & frameFlagCompressed != 0 {
                do {
                    _ = try loopCodec.decompress(frame.payload, into: resultScratch, limit: configuration.maxPayload)
                } catch {
                    lock.lock()
                    fail(.cluster("corrupt result from \(link.name) for parcel \(frame.id): \(error)"))
                    lock.unlock()
                    return
                }
                result = Array(resultScratch.bytes)
            } else {
                result = Array(frame.payload)
            }
            deliver(result, for: frame.id, from: link.name, wireBytes: wireBytes)
        case (.error, .ready) where frame.id != 0:
            lock.unlock()
            taskFailed(
                frame.id, on: link.name, message: String(decoding: frame.payload, as: UTF8.self),
                injected: frame.flags & frameFlagFaultInjected != 0)
        case (.error, _):
            let message = String(decoding: frame.payload, as: UTF8.self)
            if link.phase == .ready {
                fail(.cluster("worker \(link.name) cannot run step \(step): \(message)"))
            } else if !started && !link.joined {
                fail(.cluster("worker \(link.name) refused the master: \(message)"))
            }
            link.phase = .gone
            links[connection] = nil
            loop.close(connection, flush: false)
            lock.unlock()
        case (.heartbeat, _):
            lock.unlock()
        case (.bye, .ready):
            // A graceful leave: nothing more goes to it; it answers what it holds, then closes.
            link.leaving = true
            nodes.removeAll { $0.name == link.name }
            if started { emit(.stepUpdate(step: step, state: .nodeLeaving, detail: link.name)) }
            if nodes.isEmpty { scheduleTakeover() }
            lock.broadcast()
            lock.unlock()
        default:
            if !started && !link.joined {
                fail(.cluster("worker \(link.name) sent an unexpected frame (type \(frame.type))"))
            } else {
                // One misbehaving peer (a joiner, or a worker after a reconnect) loses its link;
                // the step goes on with the others.
                emit(
                    .stepUpdate(
                        step: step, state: .linkDropped, detail: "\(link.name): unexpected frame type \(frame.type)"))
                loop.close(connection, flush: false)
            }
            lock.unlock()
        }
    }

    /// The worker's HELLO: check its version and its proof of the cookie, then prove ours.
    private func handshake(_ payload: [UInt8], link: Link, connection: ConnectionID) {
        guard let hello = try? Hello(decoding: payload), hello.role == Hello.workerRole else {
            return refuse(connection, link, "sent a malformed HELLO")
        }
        guard hello.version == UInt16(EF_PROTOCOL_VERSION) else {
            return refuse(
                connection, link, "speaks protocol version \(hello.version), this master \(EF_PROTOCOL_VERSION)")
        }
        guard hello.codecs & (1 << UInt8(configuration.compression.codecID)) != 0 else {
            return refuse(connection, link, "does not support \(configuration.compression) compression")
        }
        guard
            Authentication.verify(
                cookie: configuration.cookie.bytes, peerRole: Hello.workerRole, peer: hello.nonce, own: link.nonce,
                proof: hello.proof)
        else {
            return refuse(connection, link, "failed authentication: its cookie differs from the master's")
        }
        let proof = Authentication.proof(
            cookie: configuration.cookie.bytes, role: Hello.masterRole, own: link.nonce, peer: hello.nonce)
        link.phase = .awaitingWelcome
        loop.send(connection, type: FrameType.auth.rawValue, bytes: proof)
    }

    private func refuse(_ connection: ConnectionID, _ link: Link, _ message: String) {
        loop.send(connection, type: FrameType.error.rawValue, bytes: Array("refused by the master: \(message)".utf8))
        loop.close(connection, flush: true)
        link.phase = .gone
        links[connection] = nil
        if !link.joined {
            fail(.cluster("worker \(link.name) \(message)"))
        } else {
            emit(.stepUpdate(step: step, state: .joinRefused, detail: "\(link.name) \(message)"))
        }
    }
}

/// Lines in a parcel (newlines, plus a last line without one), counted with memchr.
func lineCount(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    guard var cursor = bytes.baseAddress, !bytes.isEmpty else { return 0 }
    let end = cursor + bytes.count
    var lines: UInt64 = 0
    while let found = memchr(cursor, 0x0A, end - cursor) {
        lines += 1
        cursor = UnsafeRawPointer(found) + 1
    }
    return cursor < end ? lines + 1 : lines
}

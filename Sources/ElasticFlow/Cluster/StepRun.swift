internal import CElasticFlow
import Foundation

/// One step on the cluster, from connecting to the workers to tearing the connections down: the
/// orchestration. Its parts each own one concern —
///
/// - `Dispatcher`: the ledger, the scheduler's nodes, retries, overdue parcels;
/// - `LinkBook`: connections, handshakes, heartbeats, reconnects, takeover (the loop's handler);
/// - `StepCutter`: cutting and numbering parcels (its own lock);
/// - `ResultAggregator`: merges and checkpoints (its own lock);
/// - `ParcelBufferPool`: recycled buffers (its own lock);
/// - `FaultBook`: chaos bookkeeping (its own lock);
/// - `EventOutbox`: events to the interceptors, in order, outside the step lock.
///
/// The step lock (`lock`) guards the dispatcher, the link book, and the fields below marked so.
/// It is never held across a disk read, a journal call, a checkpoint, a merge or an interceptor.
/// Lock order (acyclic; a lock is only taken with those before it held):
///
///     StepCutter.lock → ParcelBufferPool.lock, the journal's mutex
///     StepRun.lock → ParcelBufferPool.lock, FaultBook.lock, EventOutbox.queueLock,
///                    ef_loop's post lock
///     EventOutbox.deliveryLock → EventOutbox.queueLock (interceptors run here)
///     ResultAggregator.lock → nothing
///
/// Threads: the caller's (`execute`), the loop thread (`LinkBook`), `masterThreads` pool threads
/// (`prepareParcels`), and a small merge pool (`mergePool`) for remote results.
final class StepRun: @unchecked Sendable {
    // Immutable after init.
    let configuration: ClusterConfiguration
    let plan: StepPlan
    var step: UInt32 { plan.step }
    let task: any ParcelTask
    let loop: EventLoop
    let pool: WorkerPool
    /// Decompresses and merges remote results. Not `pool`: its threads stay in `prepareParcels`
    /// until the step ends (blocked on the step lock's condition when no node has room), so a
    /// merge queued there could wait forever while the receipts it would close hold every slot.
    /// Two threads: merges are one at a time anyway (`ResultAggregator`), so the second only
    /// decompresses the next result meanwhile.
    let mergePool: WorkerPool
    let totalBytes: UInt64?
    let chaos: ChaosSettings?
    let cancellation: CancellationFlag?
    static let masterNode = "master"
    /// Parcels the master's own threads may hold: all of them. The master then keeps as much work
    /// as it can process itself — no compression, no copy, no merge of a serialized table —
    /// and workers get what its threads cannot take.
    var masterInFlight: Int { max(1, configuration.masterThreads) }
    let buffers: ParcelBufferPool
    let cutter: StepCutter
    /// Shared-input mode: how the master reads a split it processes itself (nil in copy mode).
    let localReader: SplitReader?
    /// Copy mode, uncompressed, over regular files, no chaos: a parcel's payload goes from the
    /// page cache to the socket (`sendfile`), never through the parcel buffer, which is recycled
    /// as soon as its receipt is made (its CRC32C and line count taken). Chaos needs the bytes in
    /// hand to flip one, so it keeps the buffered path. A packed parcel (small files several to a
    /// parcel) is no one range of a file: it always leaves from its buffer (`StepCutter.isFileRange`).
    let sendsFromFiles: Bool
    /// Copy mode with parcels cut unread (`StepCutter.cutUnread`, when `sendsFromFiles`): every
    /// PARCEL asks for the digest of what the worker processed (`frameFlagDigest`), which `claim`
    /// checks against the receipt, or against the digest of an earlier answer for a parcel cut
    /// unread.
    let digests: Bool
    /// Parcels smaller than this leave from their buffer even when `sendsFromFiles`: a file
    /// payload is a `sendfile` call of its own, while buffered frames of a batch leave together
    /// in one `writev` (64-byte parcels: about 2× the round trips per second that way).
    static let sendFileThreshold: UInt64 = 64 << 10
    /// Parcels a worker may hold unanswered: `configuration.inFlight`, or the mode's default.
    let workerInFlight: Int
    let results: ResultAggregator
    /// `--compression auto`: the parcels' codec per link, chosen here; the results' codecs, as
    /// the workers chose them (nil for a fixed codec).
    let autoParcels: AutoCompression?
    let autoResults: AutoCompression?
    /// The sampling timer of `autoParcels` is set (loop thread only).
    private var looking = false
    let faults = FaultBook()
    let events: EventOutbox
    /// The status board the step reports to (`Master.report(to:)`), or nil.
    let board: StatusBoard?

    /// The step lock; its condition wakes pool threads when a node has room or a parcel waits.
    let lock = NSCondition()
    // Guarded by `lock`.
    let dispatcher = Dispatcher()
    private(set) var links: LinkBook!
    private(set) var finished = false
    private(set) var started = false
    private(set) var failure: ElasticFlowError?
    var summary = StepSummary()
    private var bytesDone: UInt64 = 0
    /// Results claimed (their receipts closed) but still being merged.
    private var absorbing = 0
    /// Some worker was in the scheduler at some point of the step.
    private var everJoined = false
    /// Wakes the caller's thread when the step finishes or fails (the shared condition would wake
    /// it on every parcel event).
    private let ended = DispatchSemaphore(value: 0)

    init(
        configuration: ClusterConfiguration, registry: TaskRegistry, plan: StepPlan, interceptors: [any Interceptor],
        cancellation: CancellationFlag?, board: StatusBoard? = nil
    ) throws(ElasticFlowError) {
        self.board = board
        guard configuration.masterProcesses || !configuration.workers.isEmpty || configuration.listen != nil else {
            // (A master that only listens waits for workers to join, and takes over after the
            // heartbeat time-out if none comes.)
            throw .cluster("no workers and the master does not process parcels: nothing can run the step")
        }
        try configuration.validate()
        self.configuration = configuration
        var plan = plan
        plan.options.maxWordSize = configuration.maxWordSize  // the master's own parcels, and the STEP
        self.plan = plan
        self.cancellation = cancellation
        events = EventOutbox(interceptors: interceptors)
        chaos = configuration.chaos?.isActive == true ? configuration.chaos : nil
        task = try registry.task(named: plan.task)
        buffers = ParcelBufferPool(parcelSize: configuration.parcelSize)
        cutter = try StepCutter(
            plan: plan, parcelSize: configuration.parcelSize, maxWordSize: configuration.maxWordSize,
            decompression: configuration.decompression, shared: configuration.sharedInput, buffers: buffers)
        localReader = cutter.splitter.map { SplitReader(paths: $0.paths, seekable: Set($0.seekableSources)) }
        sendsFromFiles =
            cutter.copyFiles != nil && configuration.compression == .none
            && !(configuration.chaos?.isActive ?? false)
        // Small parcels leave from their buffers, several frames to a `writev` (`sendFileThreshold`):
        // those are read.
        if sendsFromFiles && UInt64(configuration.parcelSize) >= Self.sendFileThreshold { cutter.cutUnread() }
        digests = cutter.cutsUnread
        results = try ResultAggregator(plan: plan, task: task)
        // The sizes the cutter already took (a stat a file less: 5,000 small files are 5,000 stats).
        totalBytes =
            cutter.splitter?.totalBytes ?? cutter.copyFiles.map { $0.fingerprints.reduce(0) { $0 + $1.size } }
            ?? DataSource.totalSize(of: plan.sources, decompression: configuration.decompression)
        workerInFlight =
            configuration.inFlight
            ?? (configuration.sharedInput
                ? ClusterConfiguration.sharedInputInFlight
                : sendsFromFiles ? ClusterConfiguration.fileCopyInFlight : ClusterConfiguration.copyInFlight)
        // Enough queue for every in-flight parcel of a worker (file payloads count too): the
        // in-flight limit is the real bound.
        let highWater = max(64 << 20, (workerInFlight + 1) * (configuration.parcelSize + (1 << 20)))
        loop = try EventLoop(maxPayload: configuration.maxPayload, sendHighWater: highWater)
        pool = try WorkerPool(
            threads: configuration.masterThreads, name: "ef-master", scratchCapacity: configuration.parcelSize)
        mergePool = try WorkerPool(threads: 2, name: "ef-master-merge", scratchCapacity: 1 << 20)
        summary.step = plan.step
        summary.task = plan.task
        summary.compression = configuration.compression
        if configuration.compression == .auto && !configuration.sharedInput {
            autoParcels = AutoCompression(direction: .parcels)
            autoResults = AutoCompression(direction: .results)
        } else {
            autoParcels = nil
            autoResults = nil
        }
        summary.sharedInput = configuration.sharedInput
        // Under chaos the master only coordinates (unless every worker is gone), so that every
        // parcel crosses the wire and meets the injected faults.
        if configuration.masterProcesses && chaos == nil {
            dispatcher.addNode(.init(name: Self.masterNode, inFlightLimit: masterInFlight))
        }
        if let totalBytes {
            // Parcels end at a newline before the limit, so there are a few more than this.
            dispatcher.expect(parcels: Int(min(totalBytes / UInt64(configuration.parcelSize) + 16, 1 << 22)))
        }
        links = LinkBook(run: self)
    }

    // MARK: the caller's thread

    func execute(progress: ((StepProgress) -> Void)?) throws(ElasticFlowError) -> StepReport {
        let startedAt = monotonicSeconds()
        // Runs last (after `tearDown`): every event of the step reaches the interceptors before
        // we return.
        defer { events.drain() }
        board?.begin(step: step, task: plan.task, bytesTotal: totalBytes)
        loop.handler = links
        // Listening and connecting before the loop thread starts is allowed (ef_loop's set-up
        // rule), and makes every link known before we wait for the handshakes.
        try links.listen()
        lock.lock()
        links.connectAll()
        unlock()
        loop.start(name: "ef-master-loop")
        defer { tearDown() }

        // Every listed worker — or `minWorkers` of them — must be ready (or the step fails) before
        // parcels go out; the others join as they come.
        lock.lock()
        let required = configuration.minWorkers ?? configuration.workers.count
        let deadline = Date(timeIntervalSinceNow: configuration.connectTimeout.inSeconds)
        while failure == nil && links.readyListedWorkers < required {
            if !lock.wait(until: deadline) { failure = .cluster(tooFewWorkers(required: required)) }
        }
        if let failure {
            let ending = board.map { _ in (summary, statusSample()) }
            unlock()
            if let ending { board?.end(summary: ending.0, failure: failure.description, last: ending.1) }
            throw failure
        }
        started = true
        emit(.stepUpdate(step: step, state: .running, detail: "\(dispatcher.nodes.count) node(s), \(plan.task)"))
        let late = links.lateWorkers
        if !late.isEmpty {
            emit(
                .stepUpdate(
                    step: step, state: .workersPending,
                    detail:
                        "started with \(configuration.workers.count - late.count) of \(configuration.workers.count) "
                        + "listed workers (--min-workers \(required)); still trying \(late.joined(separator: ", "))"))
        }
        if dispatcher.nodes.isEmpty, let address = links.listening { awaitJoiners(on: address) }
        unlock()

        for _ in 0..<pool.size { pool.submit { [self] context in prepareParcels(context) } }

        lock.lock()
        while failure == nil && !finished {
            unlock()
            _ = ended.wait(timeout: .now() + 0.2)
            if cancellation?.isCancelled == true { withLock { fail(.cluster("step \(step) cancelled")) } }
            if let error = results.checkpointIfDue(force: false) { withLock { fail(error) } }
            lock.lock()
            if let board {
                let sample = statusSample()
                unlock()
                board.record(sample)
                lock.lock()
            }
            if let progress {
                let snapshot = StepProgress(
                    bytesDone: bytesDone, bytesTotal: totalBytes, parcelsDone: dispatcher.ledger.closedCount,
                    parcelsCut: summary.parcels, seconds: monotonicSeconds() - startedAt)
                unlock()
                progress(snapshot)
                lock.lock()
            }
        }
        unlock()
        if let error = results.checkpointIfDue(force: true) { withLock { fail(error) } }
        if failure == nil, let problem = sourceProblem() { withLock { fail(.cluster(problem)) } }
        lock.lock()
        summary.seconds = monotonicSeconds() - startedAt
        summary.compressionChoices = (autoParcels?.choices ?? []) + (autoResults?.choices ?? [])
        summary.receiptsClosed = dispatcher.ledger.closedCount
        summary.duplicates = dispatcher.ledger.duplicates
        summary.chaos = chaos == nil ? nil : faults.report { dispatcher.ledger.state(of: $0) == .closed }
        let sample = board.map { _ in statusSample() }
        if let failure {
            emit(.stepUpdate(step: step, state: .failed, detail: failure.description))
            let report = summary
            unlock()
            if let sample { board?.end(summary: report, failure: failure.description, last: sample) }
            throw failure
        }
        emit(.stepUpdate(step: step, state: summary.retries > 0 ? .completedWithRetries : .completed, detail: ""))
        let report = summary
        unlock()
        if let sample { board?.end(summary: report, failure: nil, last: sample) }
        return StepReport(output: try results.output(), summary: report)
    }

    /// Why the step cannot start: the listed workers not ready within `connectTimeout` (under the
    /// step lock).
    private func tooFewWorkers(required: Int) -> String {
        let late = links.lateWorkers.joined(separator: ", ")
        let seconds = format3(configuration.connectTimeout.inSeconds)
        guard configuration.minWorkers != nil else {
            return "worker(s) \(late) did not complete the handshake within \(seconds) s"
        }
        return "only \(links.readyListedWorkers) of the \(required) worker(s) --min-workers asks for were ready "
            + "within \(seconds) s; not ready: \(late)"
    }

    /// What the status board shows of the scheduling state (under the step lock).
    private func statusSample() -> StatusBoard.StepSample {
        var nodes = links.statusNodes(excluded: dispatcher.excluded).map {
            (name: $0.name, label: $0.label, state: $0.state, open: dispatcher.ledger.open(on: $0.name))
        }
        if dispatcher.hasNode(Self.masterNode) {
            nodes.insert(
                (name: Self.masterNode, label: "", state: "up", open: dispatcher.ledger.open(on: Self.masterNode)),
                at: 0)
        }
        let onNodes = dispatcher.ledger.openByNode.values.reduce(0, +)
        return StatusBoard.StepSample(
            bytesDone: bytesDone, parcelsCut: summary.parcels,
            receipts: ReceiptCounts(
                open: onNodes, waiting: max(0, dispatcher.ledger.openCount - onNodes),
                closed: dispatcher.ledger.closedCount),
            retries: summary.retries, duplicates: dispatcher.ledger.duplicates, taskErrors: summary.taskErrors,
            refusedResults: summary.refusedResults, speculativeCopies: summary.speculativeCopies,
            bytesSentWire: summary.bytesSentWire, bytesReceivedWire: summary.bytesReceivedWire, nodes: nodes,
            chaos: chaos == nil ? nil : faults.report { dispatcher.ledger.state(of: $0) == .closed },
            compression: (autoParcels?.current ?? []) + (autoResults?.current ?? []),
            nodeRetries: dispatcher.takenBackByNode, nodeDuplicates: dispatcher.duplicatesByNode)
    }

    /// The summary so far (for a failed step's report).
    var partialSummary: StepSummary { lock.withLock { summary } }

    private func tearDown() {
        lock.lock()
        if !finished && failure == nil { failure = .cluster("step abandoned") }
        unlock()
        pool.waitUntilIdle()
        let closed = DispatchSemaphore(value: 0)
        loop.post { [self] in
            withLock { links.closeAll() }
            closed.signal()
        }
        closed.wait()
        // Give the BYEs a moment to leave; a peer that does not read cannot hold us.
        let deadline = monotonicSeconds() + 1
        while monotonicSeconds() < deadline {
            if !withLock({ links.anyOpen }) { break }
            usleep(2000)
        }
        loop.stopAndJoin()
        // No result can be queued any more: merges in progress finish (and emit) here.
        mergePool.shutdown()
        pool.shutdown()
    }

    // MARK: the step lock

    /// Releases the step lock, then delivers the events posted under it. Every release of the
    /// step lock goes through here (or `withLock`), so no event waits for a later one.
    func unlock() {
        lock.unlock()
        events.deliver()
    }

    func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock.lock()
        defer { unlock() }
        return try body()
    }

    // MARK: under the step lock

    /// Queues an event for the interceptors (delivered by `unlock`).
    func emit(_ event: @autoclosure () -> FlowEvent) {
        if events.isActive { events.post(event()) }
    }

    func fail(_ error: ElasticFlowError) {
        if failure == nil {
            failure = error
            ended.signal()
        }
        lock.broadcast()
    }

    var isOver: Bool { finished || failure != nil }

    private func checkFinished() {
        if !finished && dispatcher.isDrained && absorbing == 0 {
            finished = true
            ended.signal()
            lock.broadcast()
        }
    }

    /// Takes a receipt back from a node that will not answer it, to send it again.
    func requeue(_ sequence: UInt64, from node: String) {
        if dispatcher.requeue(sequence, from: node) { lock.broadcast() }
    }

    /// A node is gone (or presumed dead): nothing more goes to it and its open receipts go to the
    /// others. When no node is left, the master processes the rest itself.
    func nodeDown(_ link: Link, reason: String) {
        dispatcher.removeNode(link.name)
        for receipt in dispatcher.ledger.openReceipts(on: link.name) { requeue(receipt.sequence, from: link.name) }
        guard !finished && failure == nil && started else { return }
        emit(.stepUpdate(step: step, state: .nodeDown, detail: "\(link.name): \(reason)"))
        if dispatcher.nodes.isEmpty { links.scheduleTakeover() }
        lock.broadcast()
    }

    func nodeUp(_ link: Link) {
        guard !dispatcher.hasNode(link.name), !dispatcher.isExcluded(link.name) else { return }
        // Workers join the end of the list; the master (when it processes parcels) stays first, so
        // ties go to it: a parcel it processes itself costs no compression, copy or merge of a
        // serialized table, and workers take what its threads cannot.
        dispatcher.addNode(.init(name: link.name, inFlightLimit: workerInFlight))
        everJoined = true
        if !configuration.masterProcesses || chaos != nil {
            dispatcher.removeNode(Self.masterNode)  // it only stood in for the lost workers
        }
        if started { emit(.stepUpdate(step: step, state: .nodeUp, detail: link.name)) }
        lock.broadcast()
    }

    /// No node can work yet (a join-only master): says so once, and fails the step if none has
    /// joined after `joinTimeout` (under the step lock).
    private func awaitJoiners(on address: NodeAddress) {
        let seconds = configuration.joinTimeout.inSeconds
        emit(
            .stepUpdate(
                step: step, state: .waitingForWorkers,
                detail:
                    "no node can run step \(step) yet: waiting up to \(format3(seconds)) s for workers to join on \(address)"
            ))
        let milliseconds = UInt64(seconds * 1000)
        loop.post { [self] in
            withLock {
                links.after(milliseconds: milliseconds) { [self] in
                    withLock {
                        guard dispatcher.nodes.isEmpty, !everJoined, !isOver else { return }
                        fail(
                            .cluster(
                                "no worker joined step \(step) within \(format3(seconds)) s (listening on \(address); "
                                    + "--join-timeout)"))
                    }
                }
            }
        }
    }

    /// With no worker left, the master processes the rest itself.
    func takeOver() {
        guard dispatcher.nodes.isEmpty && !finished && failure == nil else { return }
        dispatcher.addNode(.init(name: Self.masterNode, inFlightLimit: masterInFlight))
        emit(.stepUpdate(step: step, state: .masterTakesOver, detail: "no worker is left"))
        lock.broadcast()
    }

    /// Sends copies of straggling parcels to idle nodes (`speculation`); the first result wins.
    func copyStragglers(now: Double) {
        guard let settings = configuration.speculation, started, !finished, failure == nil else { return }
        let copied = dispatcher.copyStragglers(now: now, settings: settings, except: Self.masterNode)
        for (receipt, node, seconds) in copied {
            summary.speculativeCopies += 1
            emit(
                .stepUpdate(
                    step: step, state: .speculativeCopy,
                    detail: "\(receipt) open on \(node) for \(format3(seconds)) s: a copy goes to an idle node"))
        }
        if !copied.isEmpty { lock.broadcast() }
    }

    /// Takes back parcels overdue on live workers (`parcelTimeout`), to send them elsewhere.
    func sendOverdueParcelsAgain(now: Double) {
        guard let limit = configuration.parcelTimeout?.inSeconds, started, !finished, failure == nil else { return }
        let overdue = dispatcher.takeBackOverdue(now: now, limit: limit, except: Self.masterNode)
        for (receipt, node, seconds) in overdue {
            emit(
                .stepUpdate(
                    step: step, state: .parcelOverdue,
                    detail: "\(receipt) on \(node) for \(format3(seconds)) s: sent again"
                ))
            noteFailure(on: node, "\(receipt) overdue for \(format3(seconds)) s")
        }
        if !overdue.isEmpty { lock.broadcast() }
    }

    // MARK: pool threads: cut, compress, process locally

    private func prepareParcels(_ context: ThreadContext) {
        while true {
            lock.lock()
            var chosen: (node: Scheduler.Node, sequence: UInt64)?
            var retrying = false
            while chosen == nil {
                // Threads stay until the step ends: a node may go down after the last parcel was
                // cut, and its receipts come back to be sent again.
                if failure != nil || finished {
                    unlock()
                    return
                }
                // The least-loaded node first; one with nothing it may take (every retry left
                // failed there) gives its turn to the next.
                var idle: Set<String> = []
                picking: while chosen == nil, let node = dispatcher.pickNode(excluding: idle) {
                    switch dispatcher.take(for: node.name) {
                    case .receipt(let sequence, let isRetry):
                        if isRetry { summary.retries += 1 }
                        retrying = isRetry
                        chosen = (node, sequence)
                        continue
                    case .cut:
                        // The read happens outside the step lock; the node is picked again after
                        // (it may have filled up or gone meanwhile).
                        dispatcher.cutting += 1
                        unlock()
                        let cut = cutter.next()
                        lock.lock()
                        dispatcher.cutting -= 1
                        admit(cut)
                        if failure != nil || finished { break picking }
                    case .nothing:
                        idle.insert(node.name)
                    }
                }
                if chosen != nil { continue }
                if failure != nil || finished { continue }
                lock.wait()
            }
            let node = chosen!.node
            let (receipt, attempt, buffer) = dispatcher.open(chosen!.sequence, on: node.name)
            emit(.distributed(receipt, node: node.name))
            let connection = links.readyConnection(to: node.name)
            unlock()

            if retrying, let change = cutter.changedSource() {
                // A retry would read other bytes than the first attempts did: never mix them.
                withLock { fail(.cluster("\(change); parcel \(receipt) cannot be sent again")) }
                return
            }
            if node.name == Self.masterNode {
                processLocally(receipt, buffer: buffer, context: context)
            } else if let connection {
                send(receipt, attempt: attempt, buffer: buffer, to: connection, node: node.name, context: context)
            } else {
                withLock { requeue(receipt.sequence, from: node.name) }
            }
        }
    }

    /// Takes a parcel the cutter returned into the dispatcher (under the step lock).
    private func admit(_ cut: StepCutter.Cut) {
        switch cut {
        case .failed(let error):
            fail(error)
        case .exhausted:
            dispatcher.exhausted = true
            checkFinished()
            lock.broadcast()
        case .parcel(let receipt, let buffer):
            summary.parcels += 1
            summary.bytes += receipt.length
            if plan.alreadyAggregated.contains(receipt.sequence) {
                // Aggregated before a restart: counted, not sent again.
                dispatcher.restoreClosed(receipt)
                bytesDone += receipt.length
                if let buffer { buffers.recycleParcel(buffer) }
                checkFinished()
            } else {
                dispatcher.admit(receipt, buffer: buffer)
                lock.broadcast()
            }
        }
    }

    private func processLocally(_ receipt: Receipt, buffer: ParcelBuffer?, context: ThreadContext) {
        withLock { emit(.sent(receipt, node: Self.masterNode, bytes: buffer?.count ?? 0)) }
        do {
            var input = buffer?.bytes ?? UnsafeRawBufferPointer(start: nil, count: 0)
            var processed: ProcessedRange?
            if buffer == nil && cutter.isFileRange(receipt) {
                // Cut unread, or its bytes went to a worker from the file and came back to us:
                // read them (again).
                input = try cutter.reread(receipt, into: context.input)
            } else if buffer == nil, let localReader, let splitter = cutter.splitter {
                let range = ByteRange(source: Int(receipt.partition), offset: receipt.offset, length: receipt.length)
                let (owned, done) = try localReader.read(
                    range, expectedSize: splitter.fingerprints[range.source].size, into: context.input)
                input = UnsafeRawBufferPointer(rebasing: context.input.bytes[owned])
                processed = done
            }
            if digests { processed = ProcessedRange(digestOf: input) }
            let result = try task.process(ParcelBytes(input), options: plan.options)
            let entry = ResultEnvelope.Entry(sequence: receipt.sequence, processed: processed)
            guard let (claimed, _) = claim([entry], from: Self.masterNode, wireBytes: result.count) else { return }
            merge(result, combined: false, for: claimed, limits: nil, from: Self.masterNode)
        } catch let error as ElasticFlowError {
            taskFailed(receipt.sequence, on: Self.masterNode, message: "\(error)", badInput: error.isBadInput)
        } catch {
            taskFailed(receipt.sequence, on: Self.masterNode, message: "\(error)")
        }
    }

    private func send(
        _ receipt: Receipt, attempt: Int, buffer: ParcelBuffer?, to connection: ConnectionID, node: String,
        context: ThreadContext
    ) {
        if cutter.splitter != nil { return sendRange(receipt, attempt: attempt, to: connection, node: node) }
        if sendsFromFiles && (buffer == nil || receipt.length >= Self.sendFileThreshold) && cutter.isFileRange(receipt)
        {
            return sendFromFile(receipt, attempt: attempt, buffer: buffer, to: connection, node: node)
        }
        guard let buffer else {
            withLock { fail(.cluster("parcel \(receipt) has no bytes to send")) }
            return
        }
        var compression = configuration.compression
        if let autoParcels {
            autoParcels.awaitProbe(for: node)
            let (chosen, change) = autoParcels.choose(
                for: node, sequence: receipt.sequence, bytes: buffer.bytes, codec: context.codec)
            compression = chosen
            if let change {
                withLock { emit(.stepUpdate(step: step, state: .compressionChosen, detail: change.description)) }
            }
        }
        var payload = buffer
        var recycle: ParcelBuffer?
        if compression != .none {
            let wire = buffers.takeWire(for: compression, rawBytes: buffer.count)
            do {
                _ = try context.codec.compress(buffer.bytes, into: wire, with: compression)
            } catch {
                buffers.recycleWire(wire)
                withLock { fail(error) }
                return
            }
            if Double(wire.count) >= Double(buffer.count) * AutoCompression.incompressibleShare {
                // Not smaller by the margin: the parcel goes as it is (whatever the setting).
                buffers.recycleWire(wire)
                compression = .none
                withLock { summary.incompressibleParcels += 1 }
            } else {
                payload = wire
                recycle = wire
            }
        }
        let frame = payload
        let frameBytes = payload.count  // read now: a recycled buffer may be reused once sent
        let recycled = recycle
        let flags = parcelFlags(compressed: compression != .none, attempt: attempt) | (digests ? frameFlagDigest : 0)
        let codec = UInt8(compression.codecID)
        let autoParcels = autoParcels
        let fault = chaos?.fault(
            at: .masterSendsParcel, step: step, sequence: receipt.sequence, attempt: attempt,
            maxAttempts: configuration.maxAttempts)
        let buffers = buffers
        let transmit: @Sendable () -> Void = { [self] in
            var status: Int32
            let link = withLock { links.link(on: connection) }
            if fault == .byteFlip, frame.count > 0 {
                // Flip one byte after the checksum was taken: the worker's parser must reject it.
                var corrupted = Array(frame.bytes)
                corrupted[Int(receipt.sequence % UInt64(corrupted.count))] ^= 0x20
                status = corrupted.withUnsafeBytes { sent in
                    ef_loop_send_tampered(
                        loop.handle, connection.rawValue, FrameType.parcel.rawValue, flags, codec, step,
                        receipt.sequence, frame.bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                        sent.baseAddress?.assumingMemoryBound(to: UInt8.self), sent.count)
                }
                withLock { link?.closingOnPurpose = true }
                if let recycled { buffers.recycleWire(recycled) }
            } else {
                // No copy: the loop writes straight from the parcel (or its compressed copy).
                if recycled == nil { buffers.markInTransit(buffer) }
                // Uncompressed, the payload is the parcel: its receipt's CRC32C is the frame's.
                if let autoParcels {
                    autoParcels.observe(node: node, connection: connection, rate: loop.deliveryRate(connection))
                    startLooking(autoParcels)
                }
                status = loop.sendReference(
                    connection, type: FrameType.parcel.rawValue, flags: flags, codec: codec, aux: step,
                    id: receipt.sequence, payload: frame.bytes, payloadCRC: recycled == nil ? receipt.checksum : nil
                ) {
                    if let recycled { buffers.recycleWire(recycled) } else { buffers.sent(buffer) }
                }
                if status != 0 {
                    if let recycled { buffers.recycleWire(recycled) } else { buffers.sent(buffer) }
                }
            }
            lock.lock()
            if status == 0 {
                summary.bytesSentRaw += receipt.length
                summary.bytesSentWire += UInt64(frameBytes)
                emit(.sent(receipt, node: node, bytes: frameBytes))
                if let fault { faults.record(fault, receipts: [receipt.sequence]) }
            } else {
                requeue(receipt.sequence, from: node)
            }
            if fault == .connectionDrop, status == 0 { link?.closingOnPurpose = true }
            unlock()
            if fault == .connectionDrop, status == 0 {
                // Drop the connection right after the parcel left: its parcels go elsewhere.
                loop.close(connection, flush: true)
            }
        }
        if fault == .frameDelay {
            let delay = chaos!.delayMilliseconds(step: step, sequence: receipt.sequence, attempt: attempt)
            loop.post { [self] in
                withLock { links.after(milliseconds: delay, transmit) }
            }
        } else {
            loop.post(transmit)
        }
    }

    /// `auto`: looks at every link every `AutoCompression.lookMilliseconds` from the first send
    /// to the end of the step (loop thread), so an estimate never waits for the next frame.
    private func startLooking(_ auto: AutoCompression) {
        guard !looking else { return }
        looking = true
        let tick: @Sendable () -> Void = { [self] in
            for (node, connection) in auto.connections {
                auto.observe(node: node, connection: connection, rate: loop.deliveryRate(connection))
            }
            looking = false
            if !withLock({ finished }) { startLooking(auto) }
        }
        withLock { links.after(milliseconds: AutoCompression.lookMilliseconds, tick) }
    }

    /// Copy mode from files: the header goes through the loop's queue, the payload straight from
    /// the page cache (`sendfile`) with the receipt's CRC32C as the frame's. The parcel buffer is
    /// free once the send call returns: the sealed frame's tag is computed from it (without it, a
    /// retry, the loop reads the file back for the tag). A retry sends from the file again; if the
    /// file changed meanwhile, the retry's re-stat fails the step (and the worker's tag check
    /// refuses the frame anyway).
    private func sendFromFile(
        _ receipt: Receipt, attempt: Int, buffer: ParcelBuffer?, to connection: ConnectionID, node: String
    ) {
        if buffer != nil { _ = withLock { dispatcher.dropParcel(receipt.sequence) } }
        let fd: Int32
        do {
            fd = try cutter.copyFiles!.files.descriptor(Int(receipt.partition))
        } catch {
            if let buffer { buffers.recycleParcel(buffer) }
            withLock { fail(error) }
            return
        }
        let flags = parcelFlags(compressed: false, attempt: attempt) | (digests ? frameFlagDigest : 0)
        loop.post { [self] in
            // A parcel cut unread has no CRC: the sealed frame needs none (its tag, computed from
            // a pread of the file a piece at a time, covers the payload).
            let status = loop.sendFile(
                connection, type: FrameType.parcel.rawValue, flags: flags, codec: 0, aux: step, id: receipt.sequence,
                fd: fd, offset: receipt.offset, length: Int(receipt.length),
                payloadCRC: receipt.isUnread ? nil : receipt.checksum, bytes: buffer?.bytes)
            if let buffer { buffers.recycleParcel(buffer) }
            withLock {
                if status == 0 {
                    summary.bytesSentRaw += receipt.length
                    summary.bytesSentWire += receipt.length
                    emit(.sent(receipt, node: node, bytes: Int(receipt.length)))
                } else {
                    requeue(receipt.sequence, from: node)
                }
            }
        }
    }

    /// Shared-input mode: the PARCEL carries only the split (a `RangeRequest`); the worker reads
    /// the bytes itself. Chaos applies to this frame as to a parcel's.
    private func sendRange(_ receipt: Receipt, attempt: Int, to connection: ConnectionID, node: String) {
        let source = Int(receipt.partition)
        let request = RangeRequest(
            range: ByteRange(source: source, offset: receipt.offset, length: receipt.length),
            fileSize: cutter.splitter!.fingerprints[source].size)
        let payload = request.encoded()
        let flags = parcelFlags(compressed: false, attempt: attempt) | frameFlagRange
        let fault = chaos?.fault(
            at: .masterSendsParcel, step: step, sequence: receipt.sequence, attempt: attempt,
            maxAttempts: configuration.maxAttempts)
        let transmit: @Sendable () -> Void = { [self] in
            let link = withLock { links.link(on: connection) }
            var status: Int32
            if fault == .byteFlip {
                var corrupted = payload
                corrupted[Int(receipt.sequence % UInt64(payload.count))] ^= 0x20
                status = ef_loop_send_tampered(
                    loop.handle, connection.rawValue, FrameType.parcel.rawValue, flags, 0, step, receipt.sequence,
                    payload, corrupted, payload.count)
                withLock { link?.closingOnPurpose = true }
            } else {
                status = loop.send(
                    connection, type: FrameType.parcel.rawValue, aux: step, id: receipt.sequence, flags: flags,
                    codec: 0,
                    bytes: payload)
            }
            lock.lock()
            if status == 0 {
                summary.bytesSentWire += UInt64(payload.count)
                emit(.sent(receipt, node: node, bytes: payload.count))
                if let fault { faults.record(fault, receipts: [receipt.sequence]) }
            } else {
                requeue(receipt.sequence, from: node)
            }
            if fault == .connectionDrop, status == 0 { link?.closingOnPurpose = true }
            unlock()
            if fault == .connectionDrop, status == 0 { loop.close(connection, flush: true) }
        }
        if fault == .frameDelay {
            let delay = chaos!.delayMilliseconds(step: step, sequence: receipt.sequence, attempt: attempt)
            loop.post { [self] in withLock { links.after(milliseconds: delay, transmit) } }
        } else {
            loop.post(transmit)
        }
    }

    /// At the end of a step: the files are unchanged since it began (both modes: a copy-mode
    /// file that changed while it was read would give a result of two versions), and in
    /// shared-input mode what the workers processed tiles each file exactly (no byte counted
    /// twice or missed).
    /// - Returns: a one-line reason when not, else nil.
    private func sourceProblem() -> String? {
        if let change = cutter.changedSource() { return change }
        guard let splitter = cutter.splitter else { return nil }
        let processed = withLock { dispatcher.processed }
        // A resumed step has no record of what was aggregated before the restart.
        guard plan.alreadyAggregated.isEmpty else { return nil }
        var bySource: [Int: [ProcessedRange]] = [:]
        for (sequence, range) in processed where range.length > 0 {
            guard let receipt = withLock({ dispatcher.ledger.receipt(sequence) }) else { continue }
            bySource[Int(receipt.partition), default: []].append(range)
        }
        for (index, path) in splitter.paths.enumerated() {
            var next: UInt64 = 0
            for range in (bySource[index] ?? []).sorted(by: { $0.start < $1.start }) {
                guard range.start == next else {
                    return "shared input '\(path)': the bytes processed do not tile the file at offset \(next) "
                        + "(next range starts at \(range.start)): the file differs between nodes or changed"
                }
                next = range.start + range.length
            }
            guard next == splitter.processedSize(index) else {
                return "shared input '\(path)': \(next) of \(splitter.processedSize(index)) bytes were processed"
            }
        }
        return nil
    }

    // MARK: results (the merge pool for remote ones, a pool thread for the master's own)

    /// Claims a result for every receipt it lists: closes them exactly once, all or none
    /// (`Dispatcher.closeAll`), under the step lock and before any merge. Any later result for a
    /// closed receipt (a duplicate, a late answer) is dropped. In shared-input mode each receipt's
    /// processed range is checked against its split and against any earlier reading of it.
    /// A remote result (`step` is its frame's) is taken only for this step and only for receipts
    /// sent to `node`, this attempt or an earlier one; anything else is refused (`refuseResult`).
    /// - Returns: the receipts and what their parcels could hold, or nil when the result is not to
    ///   be merged.
    func claim(
        _ entries: [ResultEnvelope.Entry], from node: String, wireBytes: Int, step aux: UInt32? = nil,
        codec: UInt8? = nil
    )
        -> (receipts: [Receipt], limits: ResultLimits)?
    {
        lock.lock()
        defer { unlock() }
        if let aux, aux != step {
            refuseResult(from: node, "a result for step \(aux) while step \(step) runs")
            return nil
        }
        var receipts: [Receipt] = []
        var limits = ResultLimits(bytes: 0, longestParcel: 0)
        for entry in entries {
            guard let receipt = dispatcher.ledger.receipt(entry.sequence) else {
                refuseResult(from: node, "a result for receipt \(entry.sequence), which step \(step) never made")
                return nil
            }
            guard aux == nil || dispatcher.wasSent(entry.sequence, to: node) else {
                refuseResult(from: node, "a result for receipt \(receipt), which was never sent to it")
                return nil
            }
            receipts.append(receipt)
            // Shared input: the bytes read (a split ends at the next newline); copy mode: the parcel.
            let bytes = cutter.splitter != nil ? entry.processed?.length ?? 0 : receipt.length
            limits.bytes += bytes
            limits.longestParcel = max(limits.longestParcel, bytes)
        }
        for (index, receipt) in receipts.enumerated() {
            emit(.received(receipt, node: node, bytes: index == 0 ? wireBytes : 0))
        }
        if node != Self.masterNode { summary.bytesReceivedWire += UInt64(wireBytes) }
        if let codec, let autoResults, let first = receipts.first,
            let change = autoResults.observed(codecID: codec, from: node, sequence: first.sequence)
        {
            emit(.stepUpdate(step: step, state: .compressionChosen, detail: change.description))
        }
        if let splitter = cutter.splitter {
            for (entry, receipt) in zip(entries, receipts) {
                let path = splitter.paths[Int(receipt.partition)]
                guard let processed = entry.processed else {
                    fail(.cluster("\(node) answered receipt \(receipt) without the range it read from '\(path)'"))
                    return nil
                }
                let source = Int(receipt.partition)
                let split = ByteRange(source: source, offset: receipt.offset, length: receipt.length)
                if let problem = Self.mismatch(
                    processed, starts: splitter.processedStarts(split), size: splitter.processedSize(source),
                    splitter.fingerprints[source])
                {
                    fail(
                        .cluster(
                            "shared input '\(path)', split \(receipt.offset)+\(receipt.length) on \(node): \(problem)"))
                    return nil
                }
                if let earlier = dispatcher.recordProcessed(processed, for: receipt.sequence) {
                    fail(
                        .cluster(
                            "shared input '\(path)', split \(receipt.offset)+\(receipt.length): read as "
                                + "\(earlier.start)+\(earlier.length)#\(earlier.checksum) and again on \(node) as "
                                + "\(processed.start)+\(processed.length)#\(processed.checksum): the file changed"))
                    return nil
                }
            }
        }
        if digests {
            for (entry, receipt) in zip(entries, receipts) {
                guard let problem = checkDigest(entry.processed, of: receipt, from: node) else { continue }
                if case .refuse(let reason) = problem {
                    refuseResult(from: node, reason)
                } else if case .changed(let reason) = problem {
                    fail(.cluster(reason))
                }
                return nil
            }
            // Kept only from a result that passed whole: a refused one leaves no record.
            for (entry, receipt) in zip(entries, receipts) where receipt.isUnread {
                _ = dispatcher.recordProcessed(entry.processed!, for: receipt.sequence)
            }
        }
        let (closed, takenBack) = dispatcher.closeAll(entries.map(\.sequence), from: node)
        if !takenBack.isEmpty {
            emit(
                .stepUpdate(
                    step: step, state: .combinedResultDropped,
                    detail: "\(node): \(entries.count) receipts, some already aggregated; \(takenBack.count) sent again"
                ))
            lock.broadcast()
        }
        guard closed else { return nil }
        for receipt in receipts where dispatcher.speculated[receipt.sequence].map({ $0 != node }) == true {
            summary.speculativeWins += 1
        }
        absorbing += 1
        // The node has room again: its next parcels go out while this result merges.
        lock.broadcast()
        return (receipts, limits)
    }

    /// What is wrong with a copy-mode digest (`frameFlagDigest`).
    enum DigestProblem {
        /// The answer is not to be taken: missing, or not the parcel's length.
        case refuse(String)
        /// The file's bytes are not what they were: the step fails.
        case changed(String)
    }

    /// Checks what a node processed for a receipt of a step with digests (under the step lock):
    /// the parcel's length, and its lines and CRC32C against the receipt's (the master read it) or
    /// against the digest recorded for it (cut unread: `claim` keeps the first one taken).
    /// - Returns: nil when it holds.
    private func checkDigest(_ processed: ProcessedRange?, of receipt: Receipt, from node: String) -> DigestProblem? {
        guard let processed else { return .refuse("answered receipt \(receipt) without the digest it was asked for") }
        guard processed.length == receipt.length else {
            return .refuse("answered receipt \(receipt) with a digest of \(processed.length) bytes")
        }
        let path = cutter.copyFiles?.files.paths[Int(receipt.partition)] ?? "source \(receipt.partition)"
        let (lines, checksum): (UInt64, UInt32)
        if receipt.isUnread {
            guard let earlier = dispatcher.processed[receipt.sequence] else { return nil }
            (lines, checksum) = (earlier.lines, earlier.checksum)
        } else {
            (lines, checksum) = (receipt.items, receipt.checksum)
        }
        guard lines != processed.lines || checksum != processed.checksum else { return nil }
        return .changed(
            "'\(path)' changed during the step: parcel \(receipt) read as \(lines) lines #\(String(format: "%08x", checksum)), "
                + "and on \(node) as \(processed.lines) lines #\(String(format: "%08x", processed.checksum))")
    }

    /// A node's result cannot be taken (`reason` says why): the node is treated as failed — its
    /// connection closed (its open receipts then go elsewhere), and the failure counts towards
    /// its exclusion. Nothing of the result is merged.
    func refuseResult(from node: String, _ reason: String) {
        summary.refusedResults += 1
        emit(.stepUpdate(step: step, state: .resultRefused, detail: "\(node): \(reason)"))
        links.drop(node)
        noteFailure(on: node, "result refused: \(reason)")
        lock.broadcast()
    }

    /// Counts a failure of a worker in this step; at `excludeAfter` failures it is excluded: never
    /// scheduled again in the step, its open receipts sent elsewhere. A step left with no node
    /// fails, naming the nodes excluded. The master's own failures are the task's, never counted.
    func noteFailure(on node: String, _ why: String) {
        guard let limit = configuration.excludeAfter, node != Self.masterNode, !dispatcher.isExcluded(node)
        else { return }
        let failures = dispatcher.countFailure(on: node)
        guard failures >= limit else { return }
        let reason = "\(failures) failures in step \(step); last: \(why)"
        let takenBack = dispatcher.exclude(node, why: reason)
        summary.excluded[node] = reason
        emit(
            .stepUpdate(
                step: step, state: .nodeExcluded,
                detail: "\(node): \(reason)" + (takenBack.isEmpty ? "" : "; \(takenBack.count) parcels sent elsewhere"))
        )
        if dispatcher.nodes.isEmpty && !isOver {
            let named = dispatcher.excluded.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value))" }
            fail(.cluster("step \(step): every node left is excluded: \(named.joined(separator: ", "))"))
        }
        lock.broadcast()
    }

    /// Why a processed range cannot belong to its split, or nil when it can.
    /// - Parameters:
    ///   - starts: where the processed bytes may start (`ByteRangeSplitter.processedStarts`).
    ///   - size: the bytes the processed ranges tile (the file, or a seekable file's text).
    private static func mismatch(
        _ processed: ProcessedRange, starts: ClosedRange<UInt64>?, size: UInt64, _ source: SourceFingerprint
    ) -> String? {
        if processed.fileSize != source.size {
            return "the file is \(processed.fileSize) bytes there, \(source.size) when the master split it"
        }
        guard let starts else { return "the split is not a run of whole frames of the seekable file" }
        let (start, end) = (processed.start, processed.start &+ processed.length)
        if processed.length == 0 { return nil }
        guard starts.contains(start), end >= start, end <= size
        else { return "the bytes read (\(start)+\(processed.length)) do not start in the split" }
        return nil
    }

    /// A remote result, claimed on the loop thread: decompressed and merged on the merge pool.
    /// - Parameters:
    ///   - payload: the frame's payload, copied once out of the loop's read buffer.
    ///   - body: where the (compressed) result starts in it, after the envelope.
    func mergeRemote(
        _ payload: [UInt8], body: Int, compressed: Bool, combined: Bool, for receipts: [Receipt],
        limits: ResultLimits, from node: String
    ) {
        mergePool.submit { [self] context in
            if compressed {
                let limit = configuration.maxPayload
                let failure = payload.withUnsafeBytes { bytes -> ElasticFlowError? in
                    do throws(ElasticFlowError) {
                        _ = try context.codec.decompress(
                            UnsafeRawBufferPointer(rebasing: bytes[body...]), into: context.scratch, limit: limit)
                        return nil
                    } catch {
                        return error
                    }
                }
                if let failure {
                    withLock {
                        absorbing -= 1
                        dispatcher.reopen(receipts.map(\.sequence), refusedFrom: node)
                        refuseResult(from: node, "a corrupt result for parcel \(receipts[0].sequence): \(failure)")
                    }
                    return
                }
                // Merged where it was decompressed: no copy.
                merge(combined: combined, for: receipts, from: node) { sequences in
                    try results.merge(bytes: context.scratch.bytes, combined: combined, for: sequences, limits: limits)
                }
            } else {
                let result = Array(payload[body...])
                merge(combined: combined, for: receipts, from: node) { sequences in
                    try results.merge(result, combined: combined, for: sequences, limits: limits)
                }
            }
        }
    }

    /// Merges a claimed result (no lock held during the merge itself).
    private func merge(
        _ result: [UInt8], combined: Bool, for receipts: [Receipt], limits: ResultLimits?, from node: String
    ) {
        merge(combined: combined, for: receipts, from: node) { sequences in
            try results.merge(result, combined: combined, for: sequences, limits: limits)
        }
    }

    /// Runs `body` (the merge, no lock held), then books the receipts as aggregated.
    private func merge(
        combined: Bool, for receipts: [Receipt], from node: String, _ body: ([UInt64]) throws -> Void
    ) {
        var failed: (any Error)?
        let mergeStart = board == nil ? 0 : monotonicSeconds()
        do {
            try body(receipts.map(\.sequence))
        } catch {
            failed = error
        }
        if let board { board.recordMerge(seconds: monotonicSeconds() - mergeStart) }
        lock.lock()
        defer { unlock() }
        absorbing -= 1
        if let refusal = failed as? ResultRefusal {
            // Nothing was merged: the receipts are open again, to be answered by another node.
            dispatcher.reopen(receipts.map(\.sequence), refusedFrom: node)
            let which = receipts.count == 1 ? "receipt \(receipts[0])" : "\(receipts.count) receipts"
            refuseResult(from: node, "its result for \(which) \(refusal.reason)")
            return
        }
        if let failed {
            fail(.cluster("the result of receipt \(receipts[0]) from \(node) cannot be aggregated: \(failed)"))
            return
        }
        for receipt in receipts {
            bytesDone += receipt.length
            summary.parcelsByNode[node, default: 0] += 1
            emit(.aggregated(receipt))
            let (buffer, seconds) = dispatcher.release(receipt.sequence)
            emit(.taskComplete(receipt, node: node, seconds: seconds))
            if let buffer { buffers.recycleParcel(buffer) }
        }
        if combined { summary.combinedResults += 1 }
        checkFinished()
        lock.broadcast()
    }

    /// - Parameter badInput: the parcel's bytes are refused (`frameFlagBadInput`): once confirmed
    ///   (`Dispatcher.reportBadInput`: the master's own work, a second node, or no other node to
    ///   ask) the step fails, naming the source and offset, since every node would refuse them
    ///   alike; until then the parcel goes to another node and the report counts as the node's
    ///   failure.
    func taskFailed(
        _ sequence: UInt64, on node: String, message: String, injected: Bool = false, badInput: Bool = false
    ) {
        lock.lock()
        defer { unlock() }
        summary.taskErrors += 1
        guard let taken = dispatcher.taskFailed(sequence, on: node) else { return }
        let (receipt, failures) = taken
        if injected { faults.record(.taskRaises, receipts: [sequence]) }
        if badInput && !injected
            && dispatcher.reportBadInput(sequence, from: node, trusted: node == Self.masterNode)
        {
            let source =
                plan.sources.indices.contains(Int(receipt.partition))
                ? plan.sources[Int(receipt.partition)].description : "source \(receipt.partition)"
            fail(
                .wordTooLong(source: source, offset: receipt.offset, cap: configuration.maxWordSize))
        } else if failures >= configuration.maxAttempts {
            fail(.cluster("receipt \(receipt) failed \(failures) times; last on \(node): \(message)"))
        } else {
            dispatcher.retry(sequence)
            // Injected failures (chaos) are no fault of the node's.
            if !injected { noteFailure(on: node, "task error on \(receipt): \(message)") }
            lock.broadcast()
        }
    }
}

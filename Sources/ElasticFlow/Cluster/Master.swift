import Foundation
internal import CElasticFlow

/// The master of a cluster: cuts the sources into parcels, hands each to the node with the fewest
/// open receipts (its own threads included, when `masterProcesses`), and aggregates results as
/// they return. Every worker runs the same program, so tasks are named, not shipped.
///
/// Threads: the C event loop's thread owns the sockets; a pool of `masterThreads` threads cuts,
/// compresses and (for the master's own share) processes parcels; the caller's thread waits and
/// reports progress. Shared state is guarded by one condition lock, taken once per parcel event.
public final class Master: @unchecked Sendable {
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
    ///   that failed too often, a lost cluster.
    public func run(
        task: String, sources: [DataSource], options: TaskOptions = .init(), step: UInt32 = 1,
        progress: ((StepProgress) -> Void)? = nil
    ) throws(ElasticFlowError) -> StepReport {
        let run = try StepRun(
            configuration: configuration, registry: tasks, taskName: task, sources: sources, options: options,
            step: step, interceptors: interceptors)
        return try run.execute(progress: progress)
    }
}

/// One step on the cluster, from connecting to the workers to tearing the connections down.
final class StepRun: @unchecked Sendable {
    // Immutable after init.
    let configuration: ClusterConfiguration
    let step: UInt32
    let taskName: String
    let task: any ParcelTask
    let options: TaskOptions
    let interceptors: [any Interceptor]
    let loop: EventLoop
    let pool: WorkerPool
    let totalBytes: UInt64?
    static let masterNode = "master"
    /// Parcels a receipt may be attempted before the step fails (Spark's task.maxFailures).
    let maxAttempts = 4

    // Guarded by `lock`.
    private let lock = NSCondition()
    private let cutter: ParcelCutter
    private let aggregation: any TaskAggregation
    private var ledger = Ledger()
    private var nodes: [Scheduler.Node] = []
    private var links: [UInt64: Link] = [:]  // by connection
    private var retryQueue: [UInt64] = []
    private var parcels: [UInt64: ParcelBuffer] = [:]  // raw bytes of unclosed receipts
    private var distributedAt: [UInt64: Double] = [:]
    private var freeParcels: [ParcelBuffer] = []
    private var sequence: UInt64 = 0
    private var exhausted = false
    private var finished = false
    private var failure: ElasticFlowError?
    private var summary = StepSummary()
    private var bytesDone: UInt64 = 0
    private var heartbeatTimer: UInt64 = 0

    // Compressed copies in flight, recycled by the loop's release callbacks (own lock: a release
    // may run inside a send made while `lock` is held).
    private let wireLock = NSLock()
    private var freeWire: [ParcelBuffer] = []

    // The loop thread's scratch for decompressing results (loop thread only).
    private let resultScratch = ParcelBuffer(capacity: 1 << 20)
    private let loopCodec: Codec

    final class Link {
        enum Phase { case connecting, awaitingHello, awaitingWelcome, ready, gone }
        let address: NodeAddress
        var phase = Phase.connecting
        var nonce: [UInt8] = []
        var lastSeen = monotonicSeconds()
        var name: String { address.description }
        init(address: NodeAddress) { self.address = address }
    }

    init(
        configuration: ClusterConfiguration, registry: TaskRegistry, taskName: String, sources: [DataSource],
        options: TaskOptions, step: UInt32, interceptors: [any Interceptor]
    ) throws(ElasticFlowError) {
        guard configuration.masterProcesses || !configuration.workers.isEmpty else {
            throw .cluster("no workers and the master does not process parcels: nothing can run the step")
        }
        guard configuration.inFlight >= 1 else { throw .invalidArgument("the in-flight limit must be at least 1") }
        self.configuration = configuration
        self.step = step
        self.taskName = taskName
        self.options = options
        self.interceptors = interceptors
        task = try registry.task(named: taskName)
        cutter = try ParcelCutter(sources: sources, parcelSize: configuration.parcelSize)
        do {
            aggregation = try task.makeAggregation(options: options)
        } catch let error as ElasticFlowError {
            throw error
        } catch {
            throw .task(name: taskName, message: "\(error)")
        }
        totalBytes = Self.size(of: sources)
        loopCodec = try Codec()
        // Enough queue for every in-flight parcel of a worker: the in-flight limit is the real bound.
        let highWater = max(64 << 20, (configuration.inFlight + 1) * (configuration.parcelSize + (1 << 20)))
        loop = try EventLoop(maxPayload: configuration.maxPayload, sendHighWater: highWater)
        pool = try WorkerPool(
            threads: configuration.masterThreads, name: "ef-master", scratchCapacity: configuration.parcelSize)
        summary.step = step
        summary.task = taskName
        summary.compression = configuration.compression
        if configuration.masterProcesses {
            nodes.append(.init(name: Self.masterNode, inFlightLimit: max(1, configuration.masterThreads - 1)))
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
        let started = monotonicSeconds()
        loop.handler = self
        // Connecting before the loop thread starts is allowed (ef_loop's set-up rule), and makes
        // every link known before we wait for the handshakes.
        connectAll()
        loop.start(name: "ef-master-loop")
        defer { tearDown() }

        // Every worker must be ready (or the step fails) before parcels go out.
        lock.lock()
        let deadline = Date(timeIntervalSinceNow: configuration.connectTimeout)
        while failure == nil && links.values.contains(where: { $0.phase != .ready }) {
            if !lock.wait(until: deadline) {
                let late = links.values.filter { $0.phase != .ready }.map(\.name).sorted()
                failure = .cluster(
                    "worker(s) \(late.joined(separator: ", ")) did not complete the handshake within "
                        + "\(format3(configuration.connectTimeout)) s")
            }
        }
        if let failure {
            lock.unlock()
            throw failure
        }
        emit(.stepUpdate(step: step, state: "running", detail: "\(nodes.count) node(s), \(taskName)"))
        lock.unlock()

        for _ in 0..<pool.size { pool.submit { [self] context in prepareParcels(context) } }

        lock.lock()
        while failure == nil && !finished {
            _ = lock.wait(until: Date(timeIntervalSinceNow: 0.2))
            if let progress {
                let snapshot = StepProgress(
                    bytesDone: bytesDone, bytesTotal: totalBytes, parcelsDone: ledger.closedCount,
                    parcelsCut: summary.parcels, seconds: monotonicSeconds() - started)
                lock.unlock()
                progress(snapshot)
                lock.lock()
            }
        }
        if let failure {
            emit(.stepUpdate(step: step, state: "failed", detail: failure.description))
            lock.unlock()
            throw failure
        }
        summary.seconds = monotonicSeconds() - started
        summary.receiptsClosed = ledger.closedCount
        summary.duplicates = ledger.duplicates
        emit(.stepUpdate(step: step, state: summary.retries > 0 ? "completed-with-retries" : "completed", detail: ""))
        let report = summary
        lock.unlock()
        do {
            return StepReport(output: try aggregation.output(), summary: report)
        } catch let error as ElasticFlowError {
            throw error
        } catch {
            throw .task(name: taskName, message: "\(error)")
        }
    }

    private func tearDown() {
        lock.lock()
        if !finished && failure == nil { failure = .cluster("step abandoned") }
        lock.unlock()
        pool.waitUntilIdle()
        let closed = DispatchSemaphore(value: 0)
        loop.post { [self] in
            for (connection, link) in links where link.phase != .gone {
                if link.phase == .ready { loop.send(connection, type: FrameType.bye.rawValue, bytes: []) }
                loop.close(connection, flush: true)
            }
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

    // MARK: events (under lock)

    private func emit(_ event: FlowEvent) {
        for interceptor in interceptors { interceptor.intercept(event) }
    }

    private func fail(_ error: ElasticFlowError) {
        if failure == nil { failure = error }
        lock.broadcast()
    }

    private func checkFinished() {
        if exhausted && retryQueue.isEmpty && ledger.openCount == 0 {
            finished = true
            lock.broadcast()
        }
    }

    // MARK: pool threads: cut, compress, process locally

    private func prepareParcels(_ context: ThreadContext) {
        while true {
            lock.lock()
            var node: Scheduler.Node?
            while true {
                if failure != nil || finished || (exhausted && retryQueue.isEmpty) {
                    lock.unlock()
                    return
                }
                node = Scheduler().pick(from: nodes, ledger: ledger)
                if node != nil { break }
                lock.wait()
            }
            let chosen = node!
            var sequenceNumber: UInt64
            if let retry = retryQueue.first {
                retryQueue.removeFirst()
                guard case .waiting = ledger.state(of: retry) else {
                    lock.unlock()
                    continue  // answered meanwhile by a late result
                }
                sequenceNumber = retry
                summary.retries += 1
            } else {
                let buffer = freeParcels.popLast() ?? ParcelBuffer(capacity: configuration.parcelSize)
                let origin: ParcelOrigin?
                do {
                    origin = try cutter.next(into: buffer)
                } catch {
                    fail(error)
                    lock.unlock()
                    return
                }
                guard let origin else {
                    freeParcels.append(buffer)
                    exhausted = true
                    checkFinished()
                    lock.broadcast()
                    lock.unlock()
                    continue
                }
                sequence += 1
                sequenceNumber = sequence
                let receipt = Receipt(
                    step: step, sequence: sequence, partition: UInt32(origin.source), offset: origin.offset,
                    length: UInt64(origin.length), items: lineCount(buffer.bytes), checksum: crc32c(buffer.bytes))
                parcels[sequence] = buffer
                summary.parcels += 1
                summary.bytes += UInt64(origin.length)
                ledger.open(receipt, on: chosen.name)
                _ = ledger.takeBack(sequence)  // opened below, like a retry, in one place
            }
            let receipt = ledger.receipt(sequenceNumber)!
            ledger.open(receipt, on: chosen.name)
            distributedAt[sequenceNumber] = monotonicSeconds()
            emit(.distributed(receipt, node: chosen.name))
            let buffer = parcels[sequenceNumber]!
            let connection = links.first { $0.value.name == chosen.name }?.key
            lock.unlock()

            if chosen.name == Self.masterNode {
                processLocally(receipt, buffer: buffer)
            } else if let connection {
                send(receipt, buffer: buffer, to: connection, node: chosen.name, context: context)
            }
        }
    }

    private func processLocally(_ receipt: Receipt, buffer: ParcelBuffer) {
        lock.lock()
        emit(.sent(receipt, node: Self.masterNode, bytes: buffer.count))
        lock.unlock()
        do {
            let result = try task.process(ParcelBytes(buffer.bytes), options: options)
            deliver(result, for: receipt.sequence, from: Self.masterNode, wireBytes: result.count)
        } catch {
            taskFailed(receipt.sequence, on: Self.masterNode, message: "\(error)")
        }
    }

    private func send(_ receipt: Receipt, buffer: ParcelBuffer, to connection: UInt64, node: String, context: ThreadContext) {
        let compression = configuration.compression
        var payload = buffer
        var recycle: ParcelBuffer?
        if compression != .none {
            wireLock.lock()
            let wire = freeWire.popLast() ?? ParcelBuffer(capacity: ef_codec_bound(compression.codecID, buffer.count))
            wireLock.unlock()
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
        let recycled = recycle
        let flags: UInt8 = compression == .none ? 0 : frameFlagCompressed
        let codec = UInt8(compression.codecID)
        loop.post { [self] in
            // No copy: the loop writes straight from the parcel (or its compressed copy).
            let status = loop.sendReference(
                connection, type: FrameType.parcel.rawValue, flags: flags, codec: codec, aux: step,
                id: receipt.sequence, payload: frame.bytes
            ) { [self] in
                if let recycled {
                    wireLock.lock()
                    freeWire.append(recycled)
                    wireLock.unlock()
                }
            }
            lock.lock()
            if status == 0 {
                summary.bytesSentRaw += UInt64(buffer.count)
                summary.bytesSentWire += UInt64(frame.count)
                emit(.sent(receipt, node: node, bytes: frame.count))
            } else {
                if let recycled {
                    wireLock.lock()
                    freeWire.append(recycled)
                    wireLock.unlock()
                }
                if case .open(node, _) = ledger.state(of: receipt.sequence) {
                    ledger.takeBack(receipt.sequence)
                    retryQueue.append(receipt.sequence)
                    lock.broadcast()
                }
            }
            lock.unlock()
        }
    }

    // MARK: results (loop thread for remote ones, pool thread for the master's own)

    private func deliver(_ result: [UInt8], for sequence: UInt64, from node: String, wireBytes: Int) {
        lock.lock()
        defer { lock.unlock() }
        guard let receipt = ledger.receipt(sequence) else { return }
        emit(.received(receipt, node: node, bytes: wireBytes))
        if node != Self.masterNode { summary.bytesReceivedWire += UInt64(wireBytes) }
        guard ledger.state(of: sequence) != .closed else {
            _ = ledger.close(sequence)  // counts the duplicate
            return
        }
        do {
            try aggregation.absorb(result)
        } catch {
            fail(.cluster("the result of receipt \(receipt) from \(node) cannot be aggregated: \(error)"))
            return
        }
        _ = ledger.close(sequence)
        bytesDone += receipt.length
        summary.parcelsByNode[node, default: 0] += 1
        emit(.aggregated(receipt))
        let seconds = monotonicSeconds() - (distributedAt.removeValue(forKey: sequence) ?? monotonicSeconds())
        emit(.taskComplete(receipt, node: node, seconds: seconds))
        if let buffer = parcels.removeValue(forKey: sequence) { freeParcels.append(buffer) }
        checkFinished()
        lock.broadcast()
    }

    private func taskFailed(_ sequence: UInt64, on node: String, message: String) {
        lock.lock()
        defer { lock.unlock() }
        summary.taskErrors += 1
        guard let attempt = ledger.takeBack(sequence), let receipt = ledger.receipt(sequence) else { return }
        if attempt >= maxAttempts {
            fail(.cluster("receipt \(receipt) failed \(attempt) times; last on \(node): \(message)"))
        } else {
            retryQueue.append(sequence)
            lock.broadcast()
        }
    }

    /// A node is gone: nothing more goes to it and its open receipts go to the others.
    private func nodeDown(_ link: Link, reason: String) {
        nodes.removeAll { $0.name == link.name }
        for receipt in ledger.openReceipts(on: link.name) {
            ledger.takeBack(receipt.sequence)
            retryQueue.append(receipt.sequence)
        }
        if !finished && failure == nil {
            emit(.stepUpdate(step: step, state: "node-down", detail: "\(link.name): \(reason)"))
            if nodes.isEmpty {
                fail(.cluster("every worker is gone (last: \(link.name): \(reason)) and the master does not process parcels"))
            }
        }
        lock.broadcast()
    }
}

// MARK: the loop thread: connections and frames

extension StepRun: EventLoopHandler {
    fileprivate func connectAll() {
        lock.lock()
        defer { lock.unlock() }
        for address in configuration.workers {
            do {
                let connection = try loop.connect(host: address.host, port: address.port)
                links[connection] = Link(address: address)
            } catch {
                fail(.cluster("cannot reach worker \(address): \(error)"))
                return
            }
        }
        let interval = UInt64(max(0.01, min(configuration.heartbeatInterval, configuration.heartbeatTimeout / 3)) * 1000)
        heartbeatTimer = loop.addTimer(milliseconds: interval, repeats: true)
        lock.broadcast()
    }

    func connected(_ connection: UInt64, status: Int32, errno: Int32) {
        lock.lock()
        defer { lock.unlock() }
        guard let link = links[connection] else { return }
        if status != 0 {
            let why = status == Int32(EF_ESYS) ? String(cString: strerror(errno)) : "\(CoreErrorCode(rawValue: status))"
            link.phase = .gone
            fail(.cluster("cannot reach worker \(link.name): \(why)"))
            return
        }
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
        loop.send(connection, type: FrameType.hello.rawValue, bytes: hello.encoded())
    }

    func closed(_ connection: UInt64, reason: Int32, errno: Int32) {
        lock.lock()
        defer { lock.unlock() }
        guard let link = links[connection] else { return }
        let previous = link.phase
        link.phase = .gone
        let why: String
        switch reason {
        case 0: why = "closed the connection"
        case Int32(EF_ESYS): why = String(cString: strerror(errno))
        default: why = "\(CoreErrorCode(rawValue: reason))"
        }
        switch previous {
        case .ready: nodeDown(link, reason: why)
        case .gone: break
        default: fail(.cluster("worker \(link.name) closed the connection during the handshake: \(why)"))
        }
    }

    func timerFired(_ timer: UInt64) {
        guard timer == heartbeatTimer else { return }
        lock.lock()
        defer { lock.unlock() }
        let now = monotonicSeconds()
        for (connection, link) in links where link.phase == .ready {
            if now - link.lastSeen > configuration.heartbeatTimeout {
                loop.close(connection, flush: false)  // on_close marks it down
            } else {
                loop.send(connection, type: FrameType.heartbeat.rawValue, bytes: [])
            }
        }
    }

    func received(_ frame: IncomingFrame, on connection: UInt64) {
        lock.lock()
        guard let link = links[connection] else {
            lock.unlock()
            return
        }
        link.lastSeen = monotonicSeconds()
        switch (FrameType(rawValue: frame.type), link.phase) {
        case (.hello, .awaitingHello):
            handshake(Array(frame.payload), link: link, connection: connection)
            lock.unlock()
        case (.welcome, .awaitingWelcome):
            link.phase = .ready
            let announcement = StepAnnouncement(
                step: step, task: taskName, options: options, compression: configuration.compression.description)
            let payload = (try? JSONEncoder().encode(announcement)).map { Array($0) } ?? []
            loop.send(connection, type: FrameType.step.rawValue, aux: step, id: 0, bytes: payload)
            // Remote workers first: ties in the scheduler go to the earliest node.
            nodes.insert(.init(name: link.name, inFlightLimit: configuration.inFlight), at: nodes.filter { $0.name != Self.masterNode }.count)
            lock.broadcast()
            lock.unlock()
        case (.result, .ready):
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
            taskFailed(frame.id, on: link.name, message: String(decoding: frame.payload, as: UTF8.self))
        case (.error, _):
            let message = String(decoding: frame.payload, as: UTF8.self)
            if link.phase == .ready {
                fail(.cluster("worker \(link.name) cannot run step \(step): \(message)"))
            } else {
                fail(.cluster("worker \(link.name) refused the master: \(message)"))
            }
            link.phase = .gone
            loop.close(connection, flush: false)
            lock.unlock()
        case (.heartbeat, _):
            lock.unlock()
        case (.bye, .ready):
            // A graceful leave: it has answered its parcels; nothing more goes to it.
            nodes.removeAll { $0.name == link.name }
            lock.broadcast()
            lock.unlock()
        default:
            fail(.cluster("worker \(link.name) sent an unexpected frame (type \(frame.type))"))
            lock.unlock()
        }
    }

    /// The worker's HELLO: check its version and its proof of the cookie, then prove ours.
    private func handshake(_ payload: [UInt8], link: Link, connection: UInt64) {
        guard let hello = try? Hello(decoding: payload), hello.role == Hello.workerRole else {
            return refuse(connection, link, "sent a malformed HELLO")
        }
        guard hello.version == UInt16(EF_PROTOCOL_VERSION) else {
            return refuse(connection, link, "speaks protocol version \(hello.version), this master \(EF_PROTOCOL_VERSION)")
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

    private func refuse(_ connection: UInt64, _ link: Link, _ message: String) {
        loop.send(connection, type: FrameType.error.rawValue, bytes: Array("refused by the master: \(message)".utf8))
        loop.close(connection, flush: true)
        link.phase = .gone
        fail(.cluster("worker \(link.name) \(message)"))
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

internal import CElasticFlow
import Foundation
import Logging
import Synchronization

/// How a worker node serves masters.
public struct WorkerConfiguration: Sendable {
    /// Where to listen (port 0: any free port, see `Worker.address`).
    public var listen: NodeAddress
    /// The secret masters must prove (and that this worker proves to them).
    public var cookie: Cookie
    /// Threads that run tasks.
    public var threads = WordCountOptions.onlineCores
    /// Time between this worker's heartbeats to each master (the effective tick is
    /// `max(10 ms, min(heartbeatInterval, heartbeatTimeout / 3))`; `Limits.heartbeatInterval`).
    public var heartbeatInterval: Duration = .seconds(1)
    /// Silence after which a master is presumed gone and its connection closed (`Limits.timeout`).
    public var heartbeatTimeout: Duration = .seconds(5)
    /// Time a connection has to complete the handshake (`Limits.timeout`).
    public var handshakeTimeout: Duration = .seconds(10)
    /// The largest parcel accepted, compressed or not.
    public var maxPayload: Int = 256 << 20
    /// The name this node gives in its HELLO.
    public var name: String
    /// A master to join (connect to, and reconnect to while running) besides or instead of
    /// listening: the way a worker enters a running step.
    public var join: NodeAddress?
    /// Whether to listen at all (a joining worker may only connect out).
    public var listens = true
    /// Require encrypted sessions: a master that only authenticates its frames is refused.
    public var encrypt = false
    /// Connections that have not completed the handshake yet, at most; more are closed as they
    /// are accepted (bounded memory before authentication; logged at most once a second).
    public var maxUnauthenticated = 64

    /// A configuration with every other setting at its default (one task thread per core).
    /// - Parameters:
    ///   - listen: where to listen; port 0 picks a free port.
    ///   - cookie: the cluster's shared secret.
    ///   - name: the name given in HELLO; `worker@HOST:PORT` when nil.
    public init(listen: NodeAddress, cookie: Cookie, name: String? = nil) {
        self.listen = listen
        self.cookie = cookie
        self.name = name ?? "worker@\(listen)"
    }

    /// The name a heartbeat time-out out of range is given (`--heartbeat-timeout` gives seconds).
    public static let heartbeatTimeoutName = "the heartbeat timeout (--heartbeat-timeout)"

    /// Checks every limit and time-out against `Limits` (the same ranges as the master's).
    /// - Throws: `ElasticFlowError.invalidArgument` naming the first value out of range.
    public func validate() throws(ElasticFlowError) {
        if let join, join.port == 0 {
            throw .invalidArgument("master address '\(join)' (--join): port 0 names no master")
        }
        try Limits.check(threads, in: Limits.threads, "--threads")
        try Limits.check(heartbeatTimeout, in: Limits.timeout, Self.heartbeatTimeoutName)
        try Limits.check(heartbeatInterval, in: Limits.heartbeatInterval, "the heartbeat interval")
        try Limits.check(handshakeTimeout, in: Limits.timeout, "the handshake timeout")
        try Limits.check(bytes: maxPayload, in: Limits.maxPayload, "the payload limit")
    }
}

/// A worker node: accepts masters that prove the shared cookie, runs the tasks they send parcels
/// for (looked up by name in the registry every node shares) and answers each with a RESULT or
/// an ERROR. It serves any number of masters at once until `shutdown`.
public final class Worker: @unchecked Sendable {
    // Everything below but `configuration`, `tasks`, `logger` and `stopped` is used on the loop thread
    // only (callbacks and posted closures), which is what makes the @unchecked Sendable sound.
    /// What this worker was created with.
    public let configuration: WorkerConfiguration
    private let tasks: TaskRegistry
    /// Every line carries `node` (this worker's name); lines about a master add `peer` and `master`.
    // Set in `init`, and again in `start` before the loop runs (then only read).
    private var logger: Logger
    private let loop: EventLoop
    private let pool: WorkerPool
    private var sessions: [ConnectionID: Session] = [:]
    private var listener = ListenerID.unset
    private var heartbeatTimer = TimerID.unset
    private var inFlight = 0
    private var draining = false
    /// Parcel buffers to copy copy-mode payloads into; pool threads give them back directly.
    private let freeBuffers = Mutex<[ParcelBuffer]>([])
    /// Steps whose results are combined, swept every `combineSweepMilliseconds` for batches that
    /// waited `maxDelay` (one repeating timer, not one timer per batch).
    private var combining: [ObjectIdentifier: CombiningStep] = [:]
    private var combineSweep = TimerID.unset
    static let combineSweepMilliseconds: UInt64 = 10

    private struct CombiningStep {
        let combiner: ResultCombiner
        let work: TaskTransfer
        let connection: ConnectionID
        let step: UInt32
    }
    private var timers: [TimerID: () -> Void] = [:]
    private var joinConnection = ConnectionID.unset
    private var stopSignalled = false
    /// When a connection was last turned away for the unauthenticated-connection cap (logged at
    /// most once a second).
    private var lastCapNotice = -Double.infinity
    private let stopped = DispatchSemaphore(value: 0)
    /// The address actually bound (the port filled in when 0 was asked).
    public private(set) var address: NodeAddress
    /// The name this worker gives masters in HELLO and its log lines: `configuration.name`, except
    /// that the default name of a worker listening on port 0 takes the port it bound
    /// (`worker@127.0.0.1:41703`, not `worker@127.0.0.1:0`) once `start()` returned.
    public private(set) var name: String
    /// The status board this worker counts its parcels, bytes and masters on (`worker --metrics`),
    /// or nil. Set it before `start()`; it is only read after.
    public var statusBoard: StatusBoard?

    private struct StepSetup {
        var name: String
        var task: any ParcelTask
        var options: TaskOptions
        var compression: Compression
        /// `auto`: this step's results' codec, chosen on this side (the results' direction).
        var auto: AutoCompression?
        var chaos: ChaosSettings?
        var maxAttempts: Int
        /// Shared-input mode: reads the splits of the step's sources from this node's disk.
        var reader: SplitReader?
        /// Worker-side combining of this step's results (nil: one RESULT per parcel).
        var combiner: ResultCombiner?
    }

    private final class Session {
        enum Phase { case awaitingHello, awaitingAuth(masterNonce: [UInt8]), ready }
        var phase = Phase.awaitingHello
        let nonce: [UInt8]
        let peer: String
        var masterName = ""
        var lastSeen = monotonicSeconds()
        let opened = monotonicSeconds()
        var steps: [UInt32: StepSetup] = [:]
        /// `--compression auto`: when the lead of the master's last probe arrived, and the link's
        /// estimate from the probe after it (its bytes over the time since the lead arrived).
        var probeLeadArrived: Double?
        var probedBytesPerSecond: Double?
        init(nonce: [UInt8], peer: String) {
            self.nonce = nonce
            self.peer = peer
        }
    }

    /// A worker that is not serving yet: `start()` binds and serves.
    /// - Parameters:
    ///   - configuration: where to listen, the cookie and the limits (checked by `validate()`).
    ///   - tasks: the tasks masters may name; it must hold what the masters' registries hold.
    ///   - logger: where notable events go: masters connected and gone (`info`), refusals, silent
    ///     masters and failed joins (`warning`), results that cannot be sent (`error`), the graceful
    ///     stop (`notice`); every line with the metadata `node` (this worker's name), and `peer` and
    ///     `master` where a connection is concerned. Default: logs nothing.
    /// - Throws: `ElasticFlowError` when the event loop or the thread pool cannot be created.
    public init(
        configuration: WorkerConfiguration, tasks: TaskRegistry = .standard,
        logger: Logger = Logger(label: "elasticflow.worker", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws(ElasticFlowError) {
        self.configuration = configuration
        self.tasks = tasks
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.name)"
        self.logger = logger
        address = configuration.listen
        name = configuration.name
        loop = try EventLoop(maxPayload: configuration.maxPayload, sendHighWater: 64 << 20)
        pool = try WorkerPool(threads: configuration.threads, name: "ef-worker", scratchCapacity: 4 << 20)
    }

    /// Binds and starts serving. Returns once the worker accepts connections.
    /// - Throws: `ElasticFlowError` when the address cannot be bound.
    public func start() throws(ElasticFlowError) {
        loop.handler = self
        if configuration.listens {
            let (listener, port) = try loop.listen(host: configuration.listen.host, port: configuration.listen.port)
            self.listener = listener
            address = NodeAddress(host: configuration.listen.host, port: port)
            if configuration.listen.port == 0 && configuration.name == "worker@\(configuration.listen)" {
                name = "worker@\(address)"
                logger[metadataKey: "node"] = "\(name)"
            }
        }
        if configuration.join != nil { joinMaster() }
        let interval = UInt64(
            max(0.01, min(configuration.heartbeatInterval.inSeconds, configuration.heartbeatTimeout.inSeconds / 3))
                * 1000)
        heartbeatTimer = loop.addTimer(milliseconds: interval, repeats: true)
        loop.start(name: "ef-worker-loop")
    }

    /// Graceful stop: no new connections or parcels; parcels in progress are finished and
    /// answered, then every master gets BYE. Thread-safe; returns at once (see `wait`).
    public func shutdown() {
        loop.post { [self] in
            guard !draining else { return }
            draining = true
            if listener != .unset { loop.unlisten(listener) }
            logger.notice("shutting down: finishing \(inFlight) parcel(s) in progress")
            // BYE first, so masters stop sending; the parcels in progress are still answered.
            for (connection, session) in sessions {
                if case .ready = session.phase { loop.send(connection, type: FrameType.bye.rawValue, bytes: []) }
            }
            finishIfDrained()
        }
    }

    /// Connects to the master to join (loop thread); retried every half second while running.
    private func joinMaster() {
        guard let master = configuration.join, !draining else { return }
        guard HostResolver.isLiteral(master.host) else {
            // A name is resolved off the loop (`HostResolver`): the loop serves other masters meanwhile.
            let loop = self.loop
            HostResolver.resolve(master.host) { [weak self] address in
                loop.post { [weak self] in self?.joinMaster(at: address) }
            }
            return
        }
        joinMaster(at: master.host)
    }

    /// Loop thread: connects to the master to join at `host`, a literal (nil: its name did not resolve).
    private func joinMaster(at host: String?) {
        guard let master = configuration.join, !draining else { return }
        do {
            guard let host else {
                throw ElasticFlowError.invalidArgument("cannot connect to \(master): address does not resolve")
            }
            joinConnection = try loop.connect(host: host, port: master.port)
        } catch {
            logger.warning("cannot join \(master): \(error)", metadata: ["peer": "\(master)"])
            after(milliseconds: 500) { [self] in joinMaster() }
        }
    }

    private func after(milliseconds: UInt64, _ action: @escaping () -> Void) {
        timers[loop.addTimer(milliseconds: milliseconds, repeats: false)] = action
    }

    /// Blocks until the worker has shut down.
    public func wait() {
        stopped.wait()
        loop.stopAndJoin()
        pool.shutdown()
    }

    private func finishIfDrained() {
        guard draining, inFlight == 0 else { return }
        for (connection, _) in sessions { loop.close(connection, flush: true) }
        if sessions.isEmpty { signalStopped() }
        // Otherwise the last on_close signals; a peer that never reads cannot hold us forever.
        after(milliseconds: 3000) { [self] in signalStopped() }
    }

    private func signalStopped() {
        guard !stopSignalled else { return }
        stopSignalled = true
        stopped.signal()
    }

    private func refuse(_ connection: ConnectionID, _ session: Session, _ message: String) {
        logger.warning("refused \(session.peer): \(message)", metadata: ["peer": "\(session.peer)"])
        loop.send(connection, type: FrameType.error.rawValue, bytes: Array(message.utf8))
        loop.close(connection, flush: true)
    }

    /// The metadata of a line about a session: the peer's address and, once it said HELLO, the
    /// master's name.
    private static func metadata(_ session: Session) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["peer": "\(session.peer)"]
        if !session.masterName.isEmpty { metadata["master"] = "\(session.masterName)" }
        return metadata
    }

    /// A recycled buffer for a payload of `capacity` bytes. New and grown buffers get the next
    /// power of two: parcels cut at newlines are a little under the parcel size and each a
    /// different length, and a buffer sized to the first one would be allocated again (fresh pages,
    /// zeroed) for nearly every later parcel a few bytes longer.
    private func takeBuffer(_ capacity: Int) -> ParcelBuffer {
        let rounded = capacity <= 4096 ? 4096 : 1 << (Int.bitWidth - (capacity - 1).leadingZeroBitCount)
        let buffer = freeBuffers.withLock { $0.popLast() } ?? ParcelBuffer(capacity: rounded)
        buffer.count = 0  // nothing of it to keep: a grown buffer copies nothing
        if buffer.capacity < capacity { buffer.grow(to: rounded) }
        return buffer
    }
}

extension Worker: EventLoopHandler {
    func accepted(_ connection: ConnectionID) {
        guard !draining, let nonce = try? Authentication.nonce() else {
            loop.close(connection, flush: false)
            return
        }
        let unauthenticated = sessions.values.count { if case .ready = $0.phase { false } else { true } }
        if unauthenticated >= configuration.maxUnauthenticated && connection != joinConnection {
            // Bounded memory before authentication: the newest stranger waits for nothing.
            loop.close(connection, flush: false)
            let now = monotonicSeconds()
            if now - lastCapNotice >= 1 {
                lastCapNotice = now
                let peer = loop.peer(connection)
                logger.warning(
                    "refused \(peer): \(unauthenticated) connections have not completed the handshake: closing new ones",
                    metadata: ["peer": "\(peer)"])
            }
            return
        }
        sessions[connection] = Session(nonce: nonce, peer: loop.peer(connection))
    }

    func connected(_ connection: ConnectionID, status: Int32, errno: Int32) {
        guard connection == joinConnection else { return }
        if status != 0 {
            after(milliseconds: 500) { [self] in joinMaster() }
            return
        }
        // Joining: this side connected, but the protocol is the same — the master speaks first.
        accepted(connection)
    }

    func closed(_ connection: ConnectionID, reason: Int32, errno: Int32) {
        combining = combining.filter { $0.value.connection != connection }
        if let session = sessions.removeValue(forKey: connection) {
            let metadata = Self.metadata(session)
            if case .ready = session.phase {
                let why = reason == 0 ? "" : ": \(CoreErrorCode(rawValue: reason))"
                logger.info("master \(session.masterName) (\(session.peer)) disconnected\(why)", metadata: metadata)
                statusBoard?.workerMasters(
                    readySessions, event: "master \(session.masterName) (\(session.peer)) disconnected\(why)")
            } else if reason == Int32(EF_EVERSION) {
                logger.warning(
                    "refused \(session.peer): it speaks another protocol version (this worker speaks \(EF_PROTOCOL_VERSION))",
                    metadata: metadata)
            } else if reason == Int32(EF_EFRAMEAUTH) || reason == Int32(EF_ECLOSED), case .awaitingAuth = session.phase
            {
                // Its first frame after the HELLOs did not open as sealed: a master with another
                // cookie derives other keys, and a refusal it sends before sealing is not sealed.
                logger.warning(
                    "refused \(session.peer): the master's answer did not open under this session's keys: its cookie differs from this worker's, or it refused this worker",
                    metadata: metadata)
            } else if reason != 0 {
                logger.warning("refused \(session.peer): \(CoreErrorCode(rawValue: reason))", metadata: metadata)
            }
        }
        if connection == joinConnection && !draining {
            joinConnection = .unset
            after(milliseconds: 500) { [self] in joinMaster() }
        }
        if draining && sessions.isEmpty { signalStopped() }
    }

    /// Masters connected and authenticated (loop thread).
    private var readySessions: Int {
        sessions.values.count {
            if case .ready = $0.phase { return true }
            return false
        }
    }

    func timerFired(_ timer: TimerID) {
        if timer == combineSweep {
            sweepCombiners()
            return
        }
        if timer != heartbeatTimer {
            timers.removeValue(forKey: timer)?()
            return
        }
        let now = monotonicSeconds()
        for (connection, session) in sessions {
            switch session.phase {
            case .ready:
                if now - session.lastSeen > configuration.heartbeatTimeout.inSeconds {
                    logger.warning(
                        "master \(session.masterName) (\(session.peer)) silent for \(Int(now - session.lastSeen)) s: closing",
                        metadata: Self.metadata(session))
                    loop.close(connection, flush: false)
                } else {
                    loop.send(connection, type: FrameType.heartbeat.rawValue, bytes: [])
                }
            default:
                if now - session.opened > configuration.handshakeTimeout.inSeconds {
                    refuse(connection, session, "handshake not completed in time")
                }
            }
        }
    }

    func received(_ frame: IncomingFrame, on connection: ConnectionID) {
        guard let session = sessions[connection] else { return }
        session.lastSeen = monotonicSeconds()
        switch (FrameType(rawValue: frame.type), session.phase) {
        case (.hello, .awaitingHello):
            guard let hello = try? Hello(decoding: Array(frame.payload)) else {
                return refuse(connection, session, "malformed HELLO")
            }
            guard hello.version == UInt16(EF_PROTOCOL_VERSION) else {
                return refuse(
                    connection, session,
                    "unsupported protocol version \(hello.version) (this worker speaks \(EF_PROTOCOL_VERSION))")
            }
            guard hello.role == Hello.masterRole, let mode = SessionMode(rawValue: hello.session) else {
                return refuse(connection, session, "malformed HELLO")
            }
            guard mode.encrypts || !configuration.encrypt else {
                return refuse(
                    connection, session,
                    "this worker requires encryption (worker --encrypt) but the master does not encrypt (use --encrypt)"
                )
            }
            session.masterName = PeerText.escaped(hello.name)
            let proof = Authentication.proof(
                cookie: configuration.cookie.bytes, role: Hello.workerRole, own: session.nonce, peer: hello.nonce)
            let answer = Hello(
                role: Hello.workerRole, session: mode, nonce: session.nonce, proof: proof, threads: pool.size,
                name: name)
            loop.send(connection, type: FrameType.hello.rawValue, bytes: answer.encoded())
            // Everything after our HELLO is sealed: AUTH must already open under the keys only a
            // master holding the cookie (and both nonces) can derive.
            do {
                let keys = try SessionKeys(
                    cookie: configuration.cookie.bytes, masterNonce: hello.nonce, workerNonce: session.nonce)
                try check(loop.seal(connection, keys: keys, role: Hello.workerRole, mode: mode), "sealing the session")
            } catch {
                logger.warning(
                    "refused \(session.peer): cannot start a session: \(error)", metadata: Self.metadata(session))
                loop.close(connection, flush: false)
                return
            }
            session.phase = .awaitingAuth(masterNonce: hello.nonce)
        case (.auth, .awaitingAuth(let masterNonce)):
            guard
                Authentication.verify(
                    cookie: configuration.cookie.bytes, peerRole: Hello.masterRole, peer: masterNonce,
                    own: session.nonce, proof: Array(frame.payload))
            else {
                return refuse(
                    connection, session, "authentication failed: the master's cookie differs from this worker's")
            }
            session.phase = .ready
            loop.send(connection, type: FrameType.welcome.rawValue, bytes: [])
            logger.info("master \(session.masterName) (\(session.peer)) connected", metadata: Self.metadata(session))
            statusBoard?.workerMasters(readySessions, event: "master \(session.masterName) (\(session.peer)) connected")
        case (.error, _):
            logger.warning("\(session.peer): \(PeerText.escaped(frame.payload))", metadata: Self.metadata(session))
            loop.close(connection, flush: false)
        case (.heartbeat, .ready):
            // Answer at once: the master's time-out then depends on its own interval, not ours. A
            // padded one is a probe of the link (--compression auto): its echo carries the
            // padding's length, so the master tells it from a plain answer.
            var echo = WireWriter()
            if !frame.payload.isEmpty { echo.u64(UInt64(frame.payload.count)) }
            loop.send(connection, type: FrameType.heartbeat.rawValue, bytes: echo.bytes)
            probed(frame.payload.count, session: session)
        case (.step, .ready):
            announce(frame, session: session, connection: connection)
        case (.parcel, .ready):
            accept(frame, session: session, connection: connection)
        case (.bye, _):
            loop.close(connection, flush: true)
        default:
            refuse(connection, session, "unexpected frame type \(frame.type) at this point of the protocol")
        }
    }

    private func announce(_ frame: IncomingFrame, session: Session, connection: ConnectionID) {
        do {
            var announcement = try JSONDecoder().decode(StepAnnouncement.self, from: Data(frame.payload))
            try announcement.validate()
            announcement.options.maxWordSize = announcement.maxWordSize ?? Limits.defaultMaxWordSize
            let task = try tasks.task(named: announcement.task)
            var combiner: ResultCombiner?
            let compression = try Compression(parsing: announcement.compression)
            let auto = compression == .auto ? AutoCompression(direction: .results) : nil
            if let auto, let rate = session.probedBytesPerSecond {
                auto.seed(node: masterLinkName, bytesPerSecond: rate)
            }
            if let combine = announcement.combine, combine.maxReceipts > 1 {
                let made = ResultCombiner(
                    settings: combine, threads: pool.size, task: task, options: announcement.options)
                combiner = made
                combining[ObjectIdentifier(made)] = CombiningStep(
                    combiner: made,
                    work: TaskTransfer(
                        name: announcement.task, task: task, options: announcement.options, compression: compression,
                        auto: auto, reader: nil),
                    connection: connection, step: announcement.step)
                if combineSweep == .unset {
                    combineSweep = loop.addTimer(milliseconds: Self.combineSweepMilliseconds, repeats: true)
                }
            }
            session.steps[announcement.step] = StepSetup(
                name: announcement.task, task: task, options: announcement.options,
                compression: compression, auto: auto, chaos: announcement.chaos,
                maxAttempts: announcement.maxAttempts,
                reader: announcement.sharedSources.map {
                    SplitReader(paths: $0, seekable: Set(announcement.seekableSources ?? []))
                },
                combiner: combiner)
        } catch {
            let message = "cannot run step \(frame.aux): \(error)"
            logger.error("\(message)", metadata: Self.metadata(session).merging(["step": "\(frame.aux)"]) { $1 })
            loop.send(connection, type: FrameType.error.rawValue, aux: frame.aux, id: 0, bytes: Array(message.utf8))
        }
    }

    /// A padded heartbeat of `padding` bytes arrived: the master's probe of the link (a 1-byte
    /// lead, then the probe). The probe's bytes over the time since its lead arrived are this
    /// side's first estimate for the results' codec under `auto` (the link taken as symmetric),
    /// until this side's own sends make one.
    private func probed(_ padding: Int, session: Session) {
        let now = monotonicSeconds()
        if padding == 1 {
            session.probeLeadArrived = now
            return
        }
        guard padding > 1, let lead = session.probeLeadArrived else { return }
        session.probeLeadArrived = nil
        let rate = Double(padding) / max(now - lead, 1e-6)
        session.probedBytesPerSecond = rate
        for step in session.steps.values { step.auto?.seed(node: masterLinkName, bytesPerSecond: rate) }
    }

    private func accept(_ frame: IncomingFrame, session: Session, connection: ConnectionID) {
        let (sequence, stepID) = (frame.id, frame.aux)
        guard let step = session.steps[stepID] else {
            let message = "parcel for unknown step \(stepID)"
            loop.send(
                connection, type: FrameType.error.rawValue, aux: stepID, id: sequence, bytes: Array(message.utf8))
            return
        }
        // Shared input: the payload names a split this node reads itself. Copy mode: the payload
        // lives in the loop's read buffer only during this callback, so it is copied once.
        let request: RangeRequest?
        let buffer: ParcelBuffer?
        let compressed = frame.flags & frameFlagCompressed != 0
        let digest = frame.flags & frameFlagRange == 0 && frame.flags & frameFlagDigest != 0
        // An uncompressed parcel's digest is taken in the same pass as the copy.
        var copiedDigest: ProcessedRange?
        if frame.flags & frameFlagRange != 0 {
            guard step.reader != nil, let decoded = try? RangeRequest(decoding: Array(frame.payload)) else {
                let message = "malformed range request for step \(stepID)"
                loop.send(
                    connection, type: FrameType.error.rawValue, aux: stepID, id: sequence, bytes: Array(message.utf8))
                return
            }
            request = decoded
            buffer = nil
        } else {
            let copy = takeBuffer(frame.payload.count)
            if digest && !compressed {
                copiedDigest = ProcessedRange(digestOf: frame.payload, copyingTo: copy.base)
            } else {
                copy.base.copyMemory(from: frame.payload.baseAddress!, byteCount: frame.payload.count)
            }
            copy.count = frame.payload.count
            buffer = copy
            request = nil
        }
        let copied = copiedDigest
        let maxPayload = configuration.maxPayload
        let work = TaskTransfer(
            name: step.name, task: step.task, options: step.options, compression: step.compression,
            auto: step.auto, reader: step.reader)
        let parcelAttempt = attempt(fromParcelFlags: frame.flags)
        let fault = step.chaos?.fault(
            at: .workerProcesses, step: stepID, sequence: sequence, attempt: parcelAttempt,
            maxAttempts: step.maxAttempts)
        let delay = step.chaos?.delayMilliseconds(step: stepID, sequence: sequence, attempt: parcelAttempt) ?? 0
        // Faulty parcels are answered alone (their fault applies to their own frame), except that
        // a duplicated answer duplicates the whole combined result it joins. So is a parcel sent
        // again (attempt 2 or more: another node may be answering it too): a combined result
        // listing a receipt already closed is dropped whole, so combining retries with first
        // attempts could drop answers again and again (a livelock under overdue re-sends);
        // answered alone, a retry always closes its receipt or costs nothing else.
        let combiner = (fault == nil || fault == .duplicateResult) && parcelAttempt <= 1 ? step.combiner : nil
        combiner?.accepted()
        inFlight += 1
        statusBoard?.workerReceived(bytes: frame.payload.count)
        pool.submit { [self] context in
            let began = statusBoard == nil ? 0 : monotonicSeconds()
            var outcome: Result<[UInt8], ElasticFlowError>
            var processed: ProcessedRange?
            // An accumulating task's combined parcel goes straight into a running aggregate.
            var accumulated: ResultCombiner.Accumulation?
            var orphans: [ResultEnvelope.Entry] = []
            var parcelBytes = 0
            do {
                if fault == .taskRaises {
                    throw ElasticFlowError.task(name: work.name, message: "chaos: injected failure")
                }
                var input: UnsafeRawBufferPointer
                if let request, let reader = work.reader {
                    let (owned, range) = try reader.read(
                        request.range, expectedSize: request.fileSize, into: context.input)
                    input = UnsafeRawBufferPointer(rebasing: context.input.bytes[owned])
                    processed = range
                } else {
                    input = buffer!.bytes
                    if compressed {
                        _ = try context.codec.decompress(buffer!.bytes, into: context.scratch, limit: maxPayload)
                        input = context.scratch.bytes
                    }
                }
                parcelBytes = input.count
                // Copy mode, the master asked: what this parcel held (it may not have read it).
                if digest { processed = copied ?? ProcessedRange(digestOf: input) }
                if let combiner, combiner.accumulating != nil {
                    let accumulation = try combiner.checkOut()
                    do {
                        try accumulation.accumulator.add(ParcelBytes(input))
                    } catch {
                        orphans = combiner.drop(accumulation)
                        throw error
                    }
                    accumulated = accumulation
                    outcome = .success([])
                } else {
                    outcome = .success(try work.task.process(ParcelBytes(input), options: work.options))
                }
            } catch let error as ElasticFlowError {
                outcome = .failure(error)
            } catch {
                outcome = .failure(.task(name: work.name, message: "\(error)"))
            }
            if let statusBoard {
                var failed = false
                if case .failure = outcome { failed = true }
                statusBoard.workerProcessed(seconds: monotonicSeconds() - began, failed: failed)
            }
            let entry = ResultEnvelope.Entry(sequence: sequence, processed: processed)
            if let buffer {
                buffer.releaseOversized()
                freeBuffers.withLock { $0.append(buffer) }
            }
            if let combiner, let accumulated {
                let flush = fault == .duplicateResult
                let batches = combiner.checkIn(accumulated, entry: entry, parcelBytes: parcelBytes, flush: flush)
                for (index, batch) in batches.enumerated() {
                    // A duplicated answer duplicates the batch it flushed (the first).
                    answer(
                        batch, context: context, work: work, connection: connection, step: stepID,
                        fault: flush && index == 0 ? fault : nil, combiner: combiner)
                }
                return
            }
            if let combiner, case .success(let result) = outcome {
                do {
                    if let batch = try combiner.add(entry, result: result, flush: fault == .duplicateResult) {
                        answer(
                            batch, context: context, work: work, connection: connection, step: stepID, fault: fault,
                            combiner: combiner)
                    }
                    return
                } catch {
                    outcome = .failure(.task(name: work.name, message: "cannot combine results: \(error)"))
                }
            }
            if !orphans.isEmpty, case .failure(let error) = outcome {
                // Counted into the same aggregate as the parcel that failed: lost with it.
                let lost = ElasticFlowError.task(
                    name: work.name, message: "combined with parcel \(sequence), which failed: \(error)")
                let lostEntries = orphans
                loop.post { [self] in
                    for orphan in lostEntries {
                        send(
                            .failure(lost), sequence: orphan.sequence, connection: connection, step: stepID,
                            work: work, fault: nil, delay: 0)
                    }
                }
            }
            // Answered alone.
            let alone = OutcomeTransfer(
                outcome: outcome.flatMap { result in
                    Result { () throws(ElasticFlowError) -> EncodedResult in
                        try Self.envelope(.single(entry, result), codec: context.codec, work: work)
                    }
                })
            loop.post { [self] in
                send(
                    alone.outcome, sequence: sequence, connection: connection, step: stepID, work: work, fault: fault,
                    delay: delay)
            }
            if let combiner {
                for batch in combiner.finishedAlone() {
                    answer(
                        batch, context: context, work: work, connection: connection, step: stepID, fault: nil,
                        combiner: combiner)
                }
            }
        }
    }

    /// Encodes a batch: its envelope, then its result (or its aggregation's snapshot) compressed
    /// with the step's codec (`auto`: the one chosen for this result) — or with `none` when that
    /// does not make it smaller by the margin.
    private static func envelope(_ batch: ResultCombiner.Batch, codec: Codec, work: TaskTransfer)
        throws(ElasticFlowError) -> EncodedResult
    {
        var payload: [UInt8]
        let body: [UInt8]
        switch batch {
        case .single(let entry, let result):
            payload = ResultEnvelope(kind: .single, entries: [entry]).encoded()
            body = result
        case .combined(let entries, let aggregation):
            payload = ResultEnvelope(kind: .combined, entries: entries).encoded()
            body = try combining { try aggregation.snapshot() }
        case .accumulated(let entries, let accumulator):
            // One parcel's aggregate is that parcel's result; several make a combined one.
            payload = ResultEnvelope(kind: entries.count == 1 ? .single : .combined, entries: entries).encoded()
            body = try combining { try accumulator.serialized() }
        }
        var compression = work.compression
        if let auto = work.auto {
            compression = body.withUnsafeBytes { bytes in
                auto.choose(for: masterLinkName, sequence: batch.entries[0].sequence, bytes: bytes, codec: codec).0
            }
        }
        var compressed = try codec.compress(body, with: compression)
        if compression != .none,
            Double(compressed.count - Int(EF_CODEC_HEADER_SIZE))
                >= Double(body.count) * AutoCompression.incompressibleShare
        {
            compression = .none
            compressed = try codec.compress(body, with: .none)
        }
        payload.append(contentsOf: compressed)
        return EncodedResult(bytes: payload, codec: UInt8(compression.codecID))
    }

    /// A combined batch's body; what it throws, as an `ElasticFlowError`.
    private static func combining(_ body: () throws -> [UInt8]) throws(ElasticFlowError) -> [UInt8] {
        do {
            return try body()
        } catch let error as ElasticFlowError {
            throw error
        } catch {
            throw .task(name: "combining", message: "\(error)")
        }
    }

    /// Sends a batch from a pool thread (encoding it there, then posting the send); an
    /// accumulator goes back to its combiner once encoded.
    private func answer(
        _ batch: ResultCombiner.Batch, context: ThreadContext, work: TaskTransfer, connection: ConnectionID,
        step: UInt32, fault: FaultKind?, combiner: ResultCombiner
    ) {
        let entries = batch.entries
        let encoded = OutcomeTransfer(
            outcome: Result { () throws(ElasticFlowError) -> EncodedResult in
                try Self.envelope(batch, codec: context.codec, work: work)
            })
        if case .accumulated(_, let accumulator) = batch { combiner.recycle(accumulator) }
        loop.post { [self] in
            switch encoded.outcome {
            case .success:
                send(
                    encoded.outcome, sequence: entries[0].sequence, connection: connection, step: step, work: work,
                    fault: fault, delay: 0, parcels: entries.count)
            case .failure(let error):
                for entry in entries {
                    send(
                        .failure(error), sequence: entry.sequence, connection: connection, step: step, work: work,
                        fault: nil, delay: 0)
                }
            }
        }
    }

    /// Sends the batches that waited `maxDelay` (loop thread; encoded on the pool).
    private func sweepCombiners() {
        let now = monotonicSeconds()
        for entry in combining.values {
            for batch in entry.combiner.takeExpired(now: now) {
                let transfer = BatchTransfer(batch: batch)
                pool.submit { [self] context in
                    answer(
                        transfer.batch, context: context, work: entry.work, connection: entry.connection,
                        step: entry.step, fault: nil, combiner: entry.combiner)
                }
            }
        }
    }

    /// Sends one RESULT (or ERROR) on the loop thread, applying the parcel's injected fault.
    /// - Parameter parcels: how many parcels the frame answers (they leave `inFlight`).
    private func send(
        _ outcome: Result<EncodedResult, ElasticFlowError>, sequence: UInt64, connection: ConnectionID,
        step stepID: UInt32,
        work: TaskTransfer, fault: FaultKind?, delay: UInt64, parcels: Int = 1
    ) {
        let answer = { [self] (flags: UInt8) in
            switch outcome {
            case .success(let encoded):
                let bytes = encoded.bytes
                let codec = encoded.codec
                if fault == .byteFlip, !bytes.isEmpty {
                    // Flipped after the checksum was taken: the master's parser must catch it.
                    var corrupted = bytes
                    corrupted[Int(sequence % UInt64(bytes.count))] ^= 0x20
                    _ = ef_loop_send_tampered(
                        loop.handle, connection.rawValue, FrameType.result.rawValue, frameFlagCompressed, codec, stepID,
                        sequence, bytes, corrupted, bytes.count)
                } else {
                    work.auto?.observe(
                        node: masterLinkName, connection: connection, rate: loop.deliveryRate(connection))
                    let status = loop.send(
                        connection, type: FrameType.result.rawValue, aux: stepID, id: sequence,
                        flags: frameFlagCompressed | flags, codec: codec, bytes: bytes)
                    statusBoard?.workerSent(bytes: bytes.count)
                    if status != 0 && status != Int32(EF_ECLOSED) {
                        // A result we cannot queue must not vanish: drop the link, and the
                        // master sends this connection's parcels elsewhere.
                        logger.error(
                            "cannot queue a result (\(CoreErrorCode(rawValue: status))): closing the link",
                            metadata: ["step": "\(stepID)", "receipt": "\(sequence)"])
                        loop.close(connection, flush: false)
                    }
                }
            case .failure(let error):
                loop.send(
                    connection, type: FrameType.error.rawValue, aux: stepID, id: sequence,
                    flags: fault == .taskRaises ? frameFlagFaultInjected : error.isBadInput ? frameFlagBadInput : 0,
                    codec: 0, bytes: Array(error.description.utf8))
            }
        }
        switch fault {
        case .connectionDrop:
            loop.close(connection, flush: false)
        case .frameDelay:
            after(milliseconds: delay) { [self] in
                answer(frameFlagFaultDelayed)
                inFlight -= parcels
                finishIfDrained()
            }
            return
        case .duplicateResult:
            answer(0)
            answer(frameFlagFaultDuplicate)
        default:
            answer(0)
        }
        inFlight -= parcels
        finishIfDrained()
    }
}

private struct TaskTransfer: @unchecked Sendable {
    // Tasks are Sendable; TaskOptions and Compression are values; AutoCompression is Sendable.
    let name: String
    let task: any ParcelTask
    let options: TaskOptions
    let compression: Compression
    let auto: AutoCompression?
    let reader: SplitReader?
}

/// A RESULT's payload and the codec its result was compressed with.
private struct EncodedResult: Sendable {
    let bytes: [UInt8]
    let codec: UInt8
}

/// The name `AutoCompression` knows a worker's one link by.
private let masterLinkName = "master"

/// A batch handed from the loop thread to the pool thread that encodes it (one owner at a time).
private struct BatchTransfer: @unchecked Sendable {
    let batch: ResultCombiner.Batch
}

private struct OutcomeTransfer: Sendable {
    let outcome: Result<EncodedResult, ElasticFlowError>
}

extension EventLoop {
    @discardableResult
    func send(
        _ connection: ConnectionID, type: UInt8, aux: UInt32, id: UInt64, flags: UInt8, codec: UInt8, bytes: [UInt8]
    )
        -> Int32
    {
        bytes.withUnsafeBytes {
            send(connection, type: type, flags: flags, codec: codec, aux: aux, id: id, payload: $0)
        }
    }
}

internal import CElasticFlow
import Foundation

/// One worker as the master sees it. Every field is read and written under the step lock.
final class Link: @unchecked Sendable {
    enum Phase { case connecting, awaitingHello, awaitingWelcome, ready, gone }
    let address: NodeAddress
    /// The worker connected to us (`worker --join`): it reconnects itself.
    let joined: Bool
    var phase = Phase.connecting
    var nonce: [UInt8] = []
    var lastSeen = monotonicSeconds()
    /// When our HELLO went out: the handshake must end within `connectTimeout` of it.
    var greeted = monotonicSeconds()
    /// Silent past the heartbeat time-out: its parcels went elsewhere; it may still answer.
    var suspect = false
    /// Said BYE: no more parcels; its connection ends normally.
    var leaving = false
    /// We broke the connection on purpose (chaos): its close is not the worker's doing.
    var closingOnPurpose = false
    var reconnectDelay = 0.05
    /// Why the last attempt to reach it failed (a listed worker not ready when the step starts).
    var problem: String?
    /// It and the master cannot work together (`minWorkers`: the step goes on without it).
    var turnedAway = false
    /// The name the worker gave in its HELLO (peer text, escaped), for the status board.
    var label = ""
    let name: String
    init(address: NodeAddress, joined: Bool, name: String) {
        self.address = address
        self.joined = joined
        self.name = name
    }
}

/// A step's links to its workers, and the event loop's handler: connections, handshakes,
/// heartbeats, reconnects, joins, takeover, and the frames workers send.
///
/// Its state is guarded by the step lock (`run.lock`): a link's phase and the scheduler's nodes
/// change together. Callbacks run on the loop thread; they take the step lock and release it
/// through `run.unlock()`, which delivers the events they posted. A RESULT's receipt is claimed
/// here; its payload is copied once and handed to the step run's merge pool.
final class LinkBook: EventLoopHandler, @unchecked Sendable {
    unowned let run: StepRun
    // Guarded by the step lock.
    private var links: [ConnectionID: Link] = [:]  // by current connection
    /// Every listed worker's link, connected or waiting to reconnect (`links` holds only those
    /// with a connection).
    private var listed: [Link] = []
    private var timers: [TimerID: @Sendable () -> Void] = [:]
    private var heartbeatTimer = TimerID.unset
    private var listener = ListenerID.unset
    /// When a joiner was last turned away for the unauthenticated-connection cap (logged at
    /// most once a second).
    private var lastCapNotice = -Double.infinity
    /// Where joining workers connect (the bound port, when 0 was asked for); nil: no joining.
    private(set) var listening: NodeAddress?

    init(run: StepRun) { self.run = run }

    private var configuration: ClusterConfiguration { run.configuration }
    private var loop: EventLoop { run.loop }
    private var step: UInt32 { run.step }
    private var started: Bool { run.started }
    private var isOver: Bool { run.isOver }

    // MARK: the step run's questions (under the step lock)

    /// Listed workers that have completed their handshake.
    var readyListedWorkers: Int { listed.count { $0.phase == .ready } }
    /// The listed workers not ready yet, by name, with why when an attempt failed.
    var lateWorkers: [String] {
        listed.filter { $0.phase != .ready }.map { link in link.problem.map { "\(link.name) (\($0))" } ?? link.name }
    }
    /// Every listed worker and every joined one connected now, with its state as the status board
    /// shows it (`up`, `joined`, `connecting`, `suspected`, `leaving`, `excluded`, `down`).
    func statusNodes(excluded: [String: String]) -> [(name: String, label: String, state: String)] {
        var seen = Set<String>()
        var nodes: [(name: String, label: String, state: String)] = []
        for link in listed + links.values.filter(\.joined) where seen.insert(link.name).inserted {
            let state: String
            if excluded[link.name] != nil {
                state = "excluded"
            } else if link.leaving {
                state = "leaving"
            } else if link.suspect {
                state = "suspected"
            } else {
                switch link.phase {
                case .ready: state = link.joined ? "joined" : "up"
                case .gone: state = "down"
                case .connecting, .awaitingHello, .awaitingWelcome: state = "connecting"
                }
            }
            nodes.append((link.name, link.label, state))
        }
        return nodes
    }

    /// Some connection is not closed yet.
    var anyOpen: Bool { links.values.contains { $0.phase != .gone } }
    /// Whether a listed worker that cannot be reached before the step starts is tried again
    /// (`minWorkers` given) rather than failing the step at once (the default: all are needed).
    private var retriesBeforeStart: Bool { configuration.minWorkers != nil }

    func link(on connection: ConnectionID) -> Link? { links[connection] }

    /// The connection of `node`, if it is ready.
    func readyConnection(to node: String) -> ConnectionID? {
        links.first { $0.value.name == node && $0.value.phase == .ready }?.key
    }

    /// Closes the connection of `node` (any thread, under the step lock): a refused result's
    /// node is treated as failed, and its open receipts go elsewhere when the close comes back.
    func drop(_ node: String) {
        for (connection, link) in links where link.name == node && link.phase != .gone {
            loop.post { [loop] in loop.close(connection, flush: false) }
        }
    }

    /// Runs `action` on the loop thread after `milliseconds` (loop thread, under the step lock).
    func after(milliseconds: UInt64, _ action: @escaping @Sendable () -> Void) {
        timers[loop.addTimer(milliseconds: milliseconds, repeats: false)] = action
    }

    // MARK: set-up and tear-down

    /// Listens for joining workers, when configured (before the loop thread starts).
    func listen() throws(ElasticFlowError) {
        if let listen = configuration.listen {
            let (id, port) = try loop.listen(host: listen.host, port: listen.port)
            listener = id
            listening = NodeAddress(host: listen.host, port: port)
        }
    }

    /// Connects to every configured worker (under the step lock, before the loop thread starts).
    func connectAll() {
        for address in configuration.workers {
            let link = Link(address: address, joined: false, name: address.description)
            listed.append(link)
            connect(link)
        }
        let interval = UInt64(
            max(0.01, min(configuration.heartbeatInterval.inSeconds, configuration.heartbeatTimeout.inSeconds / 3))
                * 1000)
        heartbeatTimer = loop.addTimer(milliseconds: interval, repeats: true)
    }

    /// BYE to every ready worker, then close after flushing (loop thread, under the step lock).
    func closeAll() {
        if listener != .unset { loop.unlisten(listener) }
        for (connection, link) in links where link.phase != .gone {
            if link.phase == .ready { loop.send(connection, type: FrameType.bye.rawValue, bytes: []) }
            loop.close(connection, flush: true)
        }
    }

    // MARK: connections

    private func connect(_ link: Link) {
        link.phase = .connecting
        let host = link.address.host
        guard !HostResolver.isLiteral(host) else { return open(link, host: host) }
        // A name is resolved off the loop and outside the step lock (`HostResolver`); the link
        // stays `connecting` meanwhile.
        let loop = self.loop
        HostResolver.resolve(host) { [weak run] address in
            loop.post { [weak run] in
                guard let run else { return }
                run.withLock { run.links.resolved(link, to: address) }
            }
        }
    }

    /// Loop thread, under the step lock: the name of `link` resolved to `address` (nil: it did not).
    private func resolved(_ link: Link, to address: String?) {
        guard !isOver, link.phase == .connecting, !links.values.contains(where: { $0 === link }) else { return }
        guard let address else {
            link.phase = .gone
            return unreachable(link, "cannot connect to \(link.address): address does not resolve")
        }
        open(link, host: address)
    }

    private func open(_ link: Link, host: String) {
        do {
            let connection = try loop.connect(host: host, port: link.address.port)
            links[connection] = link
        } catch {
            link.phase = .gone
            unreachable(link, "\(error)")
        }
    }

    /// A listed worker could not be reached: before the step starts that fails it, unless
    /// `minWorkers` lets it start without; otherwise it is tried again until the step ends.
    private func unreachable(_ link: Link, _ why: String) {
        link.problem = why
        if !started && !retriesBeforeStart {
            run.fail(.cluster("cannot reach worker \(link.name): \(why)"))
        } else {
            scheduleReconnect(link)
        }
    }

    private func scheduleReconnect(_ link: Link) {
        guard !link.joined, !link.leaving, !isOver else { return }
        let delay = UInt64(link.reconnectDelay * 1000)
        link.reconnectDelay = min(1.0, link.reconnectDelay * 2)
        after(milliseconds: delay) { [self] in
            run.withLock { if !isOver { connect(link) } }
        }
    }

    /// With no node left, the master processes the rest itself — unless a worker comes back
    /// (reconnects or joins) within the heartbeat time-out. The step never hangs either way.
    func scheduleTakeover() {
        after(milliseconds: UInt64(configuration.heartbeatTimeout.inSeconds * 1000)) { [self] in
            run.withLock { run.takeOver() }
        }
    }

    func accepted(_ connection: ConnectionID) {
        run.lock.lock()
        defer { run.unlock() }
        guard !isOver else {
            loop.close(connection, flush: false)
            return
        }
        let peer = loop.peer(connection)
        let unauthenticated = links.values.count { $0.joined && $0.phase != .ready && $0.phase != .gone }
        if unauthenticated >= configuration.maxUnauthenticated {
            // Bounded memory before authentication: the newest stranger waits for nothing.
            loop.close(connection, flush: false)
            let now = monotonicSeconds()
            if now - lastCapNotice >= 1 {
                lastCapNotice = now
                run.emit(
                    .stepUpdate(
                        step: step, state: .joinRefused,
                        detail:
                            "joined:\(peer): \(unauthenticated) connections have not completed the handshake: closing new ones"
                    ))
            }
            return
        }
        let link = Link(
            address: (try? NodeAddress(parsing: peer)) ?? NodeAddress(host: peer, port: 0), joined: true,
            name: "joined:\(peer)")
        links[connection] = link
        greet(link, connection)
    }

    func connected(_ connection: ConnectionID, status: Int32, errno: Int32) {
        run.lock.lock()
        defer { run.unlock() }
        guard let link = links[connection] else { return }
        if status != 0 {
            let why = status == Int32(EF_ESYS) ? String(cString: strerror(errno)) : "\(CoreErrorCode(rawValue: status))"
            links[connection] = nil
            link.phase = .gone
            unreachable(link, why)
            return
        }
        greet(link, connection)
    }

    private func greet(_ link: Link, _ connection: ConnectionID) {
        do {
            link.nonce = try Authentication.nonce()
        } catch {
            run.fail(error)
            return
        }
        let hello = Hello(
            role: Hello.masterRole, session: SessionMode(encrypt: configuration.encrypt), nonce: link.nonce,
            threads: configuration.masterThreads, name: "master@\(ProcessInfo.processInfo.hostName)")
        link.phase = .awaitingHello
        link.lastSeen = monotonicSeconds()
        link.greeted = link.lastSeen
        loop.send(connection, type: FrameType.hello.rawValue, bytes: hello.encoded())
    }

    func closed(_ connection: ConnectionID, reason: Int32, errno: Int32) {
        run.lock.lock()
        defer { run.unlock() }
        guard let link = links.removeValue(forKey: connection) else { return }
        let previous = link.phase
        link.phase = .gone
        let why: String
        switch reason {
        case 0: why = "closed the connection"
        case Int32(EF_ESYS): why = String(cString: strerror(errno))
        case Int32(EF_EVERSION): why = "speaks another protocol version (this master speaks \(EF_PROTOCOL_VERSION))"
        default: why = "\(CoreErrorCode(rawValue: reason))"
        }
        if previous == .ready {
            let open = run.dispatcher.ledger.openReceipts(on: link.name).map(\.sequence)
            if run.chaos != nil && !link.closingOnPurpose && !link.leaving {
                // The worker broke the link: a corrupted frame (caught by its tag, or its checksum
                // before the session is sealed) or a drop.
                let corrupted = reason == Int32(EF_ECHECKSUM) || reason == Int32(EF_EFRAMEAUTH)
                run.faults.record(corrupted ? .byteFlip : .connectionDrop, receipts: open)
            } else if link.closingOnPurpose {
                // The fault we injected took these receipts down with it.
                run.faults.addToLastInjected(open)
            }
            link.closingOnPurpose = false
            run.nodeDown(link, reason: why)
            scheduleReconnect(link)
        } else if previous != .gone {
            if !started && !link.joined && !retriesBeforeStart {
                run.fail(.cluster("worker \(link.name) closed the connection during the handshake: \(why)"))
            } else {
                if !link.joined { link.problem = "closed the connection during the handshake: \(why)" }
                if link.joined && reason != 0 {
                    run.emit(.stepUpdate(step: step, state: .joinRefused, detail: "\(link.name): \(why)"))
                }
                scheduleReconnect(link)
            }
        }
    }

    func timerFired(_ timer: TimerID) {
        run.lock.lock()
        if let action = timers.removeValue(forKey: timer) {
            run.unlock()
            action()
            return
        }
        defer { run.unlock() }
        guard timer == heartbeatTimer else { return }
        let now = monotonicSeconds()
        // A handshake has `connectTimeout` to complete, joiners' too (before the step starts,
        // StepRun fails the step for a configured worker that is late).
        for (connection, link) in links
        where (link.phase == .awaitingHello || link.phase == .awaitingWelcome) && (link.joined || started)
            && now - link.greeted > configuration.connectTimeout.inSeconds
        {
            link.phase = .gone
            links[connection] = nil
            loop.close(connection, flush: false)
            if link.joined {
                run.emit(
                    .stepUpdate(
                        step: step, state: .joinRefused, detail: "\(link.name): handshake not completed in time"))
            } else {
                scheduleReconnect(link)
            }
        }
        for (connection, link) in links where link.phase == .ready {
            let silence = now - link.lastSeen
            if silence > 3 * configuration.heartbeatTimeout.inSeconds {
                loop.close(connection, flush: false)  // on_close: gone for good
            } else if silence > configuration.heartbeatTimeout.inSeconds && !link.suspect {
                // Presumed dead: its parcels go elsewhere now; a late answer is still welcome
                // (and dropped if its receipt was closed meanwhile).
                link.suspect = true
                run.nodeDown(link, reason: "silent for \(format3(silence)) s")
            }
            loop.send(connection, type: FrameType.heartbeat.rawValue, bytes: [])
        }
        run.copyStragglers(now: now)
        run.sendOverdueParcelsAgain(now: now)
        // A safety net, one wake-up per tick: pool threads waiting for room look again, so no
        // missed wake-up can leave parcels waiting while nodes have room.
        run.lock.broadcast()
    }

    // MARK: frames

    func received(_ frame: IncomingFrame, on connection: ConnectionID) {
        run.lock.lock()
        guard let link = links[connection] else {
            run.unlock()
            return
        }
        link.lastSeen = monotonicSeconds()
        if link.suspect && link.phase == .ready {
            link.suspect = false
            if !link.leaving { run.nodeUp(link) }
        }
        switch (FrameType(rawValue: frame.type), link.phase) {
        case (.hello, .awaitingHello):
            handshake(Array(frame.payload), link: link, connection: connection)
            run.unlock()
        case (.welcome, .awaitingWelcome):
            link.phase = .ready
            link.reconnectDelay = 0.05
            link.problem = nil
            let announcement = StepAnnouncement(
                step: step, task: run.plan.task, options: run.plan.options,
                compression: configuration.compression.description, chaos: run.chaos,
                maxAttempts: configuration.maxAttempts, sharedSources: run.cutter.splitter?.paths,
                seekableSources: run.cutter.splitter?.seekableSources,
                combine: configuration.combine.maxReceipts > 1 ? configuration.combine : nil,
                maxWordSize: configuration.maxWordSize)
            let payload = (try? JSONEncoder().encode(announcement)).map { Array($0) } ?? []
            if let auto = run.autoParcels {
                // The link's first estimate for --compression auto: padding the worker echoes.
                probe(link.name, on: connection, auto: auto, padding: AutoCompression.probeBytes)
            }
            loop.send(connection, type: FrameType.step.rawValue, aux: step, id: 0, bytes: payload)
            run.nodeUp(link)
            run.unlock()
        case (.result, .ready):
            run.unlock()
            let payload = Array(frame.payload)
            guard let (envelope, body) = try? ResultEnvelope.decode(payload) else {
                run.withLock { run.refuseResult(from: link.name, "a malformed result envelope for parcel \(frame.id)") }
                return
            }
            let sequences = envelope.entries.map(\.sequence)
            if frame.flags & frameFlagFaultDuplicate != 0 { run.faults.record(.duplicateResult, receipts: sequences) }
            if frame.flags & frameFlagFaultDelayed != 0 { run.faults.record(.frameDelay, receipts: sequences) }
            // Claimed here, on the loop thread, so a duplicate costs no merge; merged on the
            // merge pool, so the loop goes on reading while a table is decompressed and merged.
            guard
                let (receipts, limits) = run.claim(
                    envelope.entries, from: link.name, wireBytes: payload.count, step: frame.aux,
                    codec: frame.codec)
            else { return }
            run.mergeRemote(
                payload, body: body, compressed: frame.flags & frameFlagCompressed != 0,
                combined: envelope.kind == .combined, for: receipts, limits: limits, from: link.name)
        case (.error, .ready) where frame.id != 0:
            run.unlock()
            run.taskFailed(
                frame.id, on: link.name, message: PeerText.escaped(frame.payload),
                injected: frame.flags & frameFlagFaultInjected != 0, badInput: frame.flags & frameFlagBadInput != 0)
        case (.error, _):
            let message = PeerText.escaped(frame.payload)
            if link.phase == .ready {
                run.fail(.cluster("worker \(link.name) cannot run step \(step): \(message)"))
            } else if !started && !link.joined {
                turnedAway(link, "refused the master: \(message)")
            }
            link.phase = .gone
            links[connection] = nil
            loop.close(connection, flush: false)
            run.unlock()
        case (.heartbeat, _):
            run.unlock()
            // The echo of a probe of the link carries the padding's length (a plain heartbeat none).
            guard frame.payload.count == 8, let auto = run.autoParcels else { break }
            var echo = WireReader(Array(frame.payload))
            if let padding = try? echo.u64(),
                let grown = auto.probeAnswered(by: link.name, padding: padding, largest: configuration.parcelSize)
            {
                probe(link.name, on: connection, auto: auto, padding: grown)
            }
        case (.bye, .ready):
            // A graceful leave: nothing more goes to it; it answers what it holds, then closes.
            link.leaving = true
            run.dispatcher.removeNode(link.name)
            if started { run.emit(.stepUpdate(step: step, state: .nodeLeaving, detail: link.name)) }
            if run.dispatcher.nodes.isEmpty { scheduleTakeover() }
            run.lock.broadcast()
            run.unlock()
        default:
            if !started && !link.joined {
                run.fail(.cluster("worker \(link.name) sent an unexpected frame (type \(frame.type))"))
            } else {
                // One misbehaving peer (a joiner, or a worker after a reconnect) loses its link;
                // the step goes on with the others.
                run.emit(
                    .stepUpdate(
                        step: step, state: .linkDropped, detail: "\(link.name): unexpected frame type \(frame.type)"))
                loop.close(connection, flush: false)
            }
            run.unlock()
        }
    }

    /// `--compression auto`: a probe of the link to `node`, two padded HEARTBEATs the worker
    /// echoes at once, a 1-byte lead and then `padding` bytes (docs/compression.md).
    private func probe(_ node: String, on connection: ConnectionID, auto: AutoCompression, padding: Int) {
        auto.probeSent(to: node, connection: connection, padding: padding)
        loop.send(connection, type: FrameType.heartbeat.rawValue, bytes: [0])
        loop.send(connection, type: FrameType.heartbeat.rawValue, bytes: [UInt8](repeating: 0, count: padding))
    }

    /// The worker's HELLO: check its version and its proof of the cookie, then prove ours.
    private func handshake(_ payload: [UInt8], link: Link, connection: ConnectionID) {
        guard let hello = try? Hello(decoding: payload) else {
            return refuse(connection, link, "sent a malformed HELLO")
        }
        guard hello.version == UInt16(EF_PROTOCOL_VERSION) else {
            return refuse(
                connection, link, "speaks protocol version \(hello.version), this master \(EF_PROTOCOL_VERSION)")
        }
        guard hello.role == Hello.workerRole else { return refuse(connection, link, "sent a malformed HELLO") }
        guard hello.codecs & configuration.compression.codecMask == configuration.compression.codecMask else {
            return refuse(connection, link, "does not support \(configuration.compression) compression")
        }
        let mode = SessionMode(encrypt: configuration.encrypt)
        guard hello.session == mode.rawValue else {
            return refuse(
                connection, link, "answered with session mode \(hello.session), this master asked \(mode.rawValue)")
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
        // From AUTH on, every frame both ways is sealed under keys only the two ends can derive:
        // a relay that passed the proofs along cannot forge, replay or reorder a frame.
        do {
            let keys = try SessionKeys(
                cookie: configuration.cookie.bytes, masterNonce: link.nonce, workerNonce: hello.nonce)
            try check(loop.seal(connection, keys: keys, role: Hello.masterRole, mode: mode), "sealing the session")
        } catch {
            return refuse(connection, link, "cannot start a session: \(error)")
        }
        link.phase = .awaitingWelcome
        link.label = PeerText.escaped(hello.name, limit: 128)
        loop.send(connection, type: FrameType.auth.rawValue, bytes: proof)
    }

    private func refuse(_ connection: ConnectionID, _ link: Link, _ message: String) {
        loop.send(connection, type: FrameType.error.rawValue, bytes: Array("refused by the master: \(message)".utf8))
        loop.close(connection, flush: true)
        link.phase = .gone
        links[connection] = nil
        if link.joined {
            run.emit(.stepUpdate(step: step, state: .joinRefused, detail: "\(link.name) \(message)"))
        } else {
            turnedAway(link, message)
        }
    }

    /// A listed worker and this master cannot work together (cookie, version, codec, session
    /// mode). That fails the step — unless `minWorkers` lets it go on without the worker, which is
    /// then not tried again (`join-refused`), while enough listed workers are left to start.
    private func turnedAway(_ link: Link, _ message: String) {
        guard let minimum = configuration.minWorkers else {
            run.fail(.cluster("worker \(link.name) \(message)"))
            return
        }
        link.problem = message
        link.turnedAway = true
        run.emit(.stepUpdate(step: step, state: .joinRefused, detail: "\(link.name) \(message)"))
        if !started && listed.count(where: \.turnedAway) > listed.count - minimum {
            run.fail(.cluster("worker \(link.name) \(message)"))
        }
    }
}

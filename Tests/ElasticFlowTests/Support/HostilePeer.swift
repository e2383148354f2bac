import CElasticFlow
import Foundation

@testable import ElasticFlow

/// A peer played by test code over a real loopback socket: it speaks the wire protocol itself
/// (version 3: frames by the C core's `ef_frame_encode` / `ef_frame_parse`, sealed after the
/// HELLOs with `ef_seal_*` under keys derived from the cookie; HELLO and the proofs by the
/// product's `Hello` / `Authentication` / `SessionKeys`), so a test can make it lie, stall or fail
/// on purpose against a real `elasticflow` process. All framing of the tests lives in this one
/// file: `HostileWorker` and `HostileConnection` serve parcels; `HostilePeer` and
/// `HostileListener` (below) play either side at the byte level (relays, replays, huge headers).
///
/// `HostileWorker` listens where a master expects a worker (`--workers ADDRESS`) and serves each
/// connection the master makes on a thread of its own; `HostileConnection.join` connects to a
/// master's `--listen` port as a joining worker.
final class HostileWorker: @unchecked Sendable {
    /// `127.0.0.1:PORT`, for the master's `--workers`.
    let address: String
    private let listener: Int32
    // Guarded by lock.
    private let lock = NSLock()
    private var stopped = false
    private var connections: [HostileConnection] = []

    /// - Parameter serve: what the peer does on each connection, after the handshake (on its own
    ///   thread; a thrown error or a return ends that connection).
    init(cookie: String, serve: @escaping @Sendable (HostileConnection) throws -> Void) throws {
        let (listener, port) = try Loopback.bind(backlog: 16)
        self.listener = listener
        self.address = "127.0.0.1:\(port)"
        Thread { [self] in
            while true {
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { return }  // the listener was shut down
                let connection = HostileConnection(fd: fd)
                let keep = lock.withLock {
                    if !stopped { connections.append(connection) }
                    return !stopped
                }
                guard keep else {
                    connection.close()
                    return
                }
                Thread {
                    defer { connection.close() }
                    guard (try? connection.handshakeAsWorker(cookie: cookie)) != nil else { return }
                    try? serve(connection)
                }.start()
            }
        }.start()
    }

    /// Stops accepting and closes every connection.
    func stop() {
        let open = lock.withLock {
            stopped = true
            return connections
        }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for connection in open { connection.close() }
    }

    deinit { stop() }
}

/// One frame as it crossed the wire.
struct HostileFrame {
    var type: UInt8
    var flags: UInt8
    var codec: UInt8
    var aux: UInt32
    var id: UInt64
    var payload: [UInt8]

    var kind: FrameType? { FrameType(rawValue: type) }

    /// A PARCEL's honest digest when the master asks for one (`frameFlagDigest`), else nil.
    var digest: ProcessedRange? {
        guard kind == .parcel, flags & frameFlagDigest != 0 else { return nil }
        return payload.withUnsafeBytes { ProcessedRange(digestOf: $0) }
    }
}

/// One connection of a hostile peer: blocking reads with a time-out, whole-frame writes.
final class HostileConnection: @unchecked Sendable {
    // The descriptor is closed once (guarded by lock); reads and writes come from the one thread
    // serving the connection.
    private let fd: Int32
    private let lock = NSLock()
    private var closed = false
    private var buffer: [UInt8] = []
    /// The session, once both HELLOs crossed: frames sent are sealed by `sealer`, frames read
    /// opened by `opener`.
    private var sealer: OpaquePointer?
    private var opener: OpaquePointer?
    /// The STEP the master announced (its task and options), once one came.
    private(set) var announcement: StepAnnouncement?

    init(fd: Int32) { self.fd = fd }

    deinit {
        ef_seal_free(sealer)
        ef_seal_free(opener)
    }

    /// Connects to a master's `--listen` port as a joining worker, and completes the handshake.
    static func join(port: UInt16, cookie: String) throws -> HostileConnection {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in.loopback(port: port)
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            Glibc.close(fd)
            throw HostilePeerError.system("connect", errno)
        }
        let connection = HostileConnection(fd: fd)
        try connection.handshakeAsWorker(cookie: cookie)
        return connection
    }

    func close() {
        let first = lock.withLock {
            defer { closed = true }
            return !closed
        }
        if first {
            shutdown(fd, Int32(SHUT_RDWR))
            Glibc.close(fd)
        }
    }

    /// The worker's side of the handshake: the master's HELLO, ours with the proof of the cookie,
    /// its AUTH (checked), our WELCOME.
    func handshakeAsWorker(cookie: String) throws {
        let secret = Array(cookie.utf8)
        guard let hello = try read(timeout: 10), hello.kind == .hello else { throw HostilePeerError.protocol("HELLO") }
        let master = try Hello(decoding: hello.payload)
        let nonce = try Authentication.nonce()
        let proof = Authentication.proof(cookie: secret, role: Hello.workerRole, own: nonce, peer: master.nonce)
        let mode = SessionMode(rawValue: master.session) ?? .authenticated
        try send(
            .hello,
            payload: Hello(
                role: Hello.workerRole, session: mode, nonce: nonce, proof: proof, threads: 1, name: "hostile"
            )
            .encoded())
        // Everything after our HELLO is sealed, as a real worker does.
        var keys = try SessionKeys(cookie: secret, masterNonce: master.nonce, workerNonce: nonce).raw
        let flags: UInt32 = mode.encrypts ? EF_SEAL_ENCRYPT : 0
        sealer = withUnsafeBytes(of: &keys.worker_to_master) { ef_seal_create(Array($0), Hello.workerRole, flags) }
        opener = withUnsafeBytes(of: &keys.master_to_worker) {
            ef_seal_create(Array($0), Hello.masterRole, flags | EF_SEAL_OPENER)
        }
        guard let auth = try read(timeout: 10), auth.kind == .auth,
            Authentication.verify(
                cookie: secret, peerRole: Hello.masterRole, peer: master.nonce, own: nonce, proof: auth.payload)
        else { throw HostilePeerError.protocol("AUTH") }
        try send(.welcome)
    }

    /// Sends one frame (header and CRCs by `ef_frame_encode`).
    func send(
        _ type: FrameType, flags: UInt8 = 0, codec: UInt8 = 0, aux: UInt32 = 0, id: UInt64 = 0, payload: [UInt8] = []
    ) throws {
        var header = [UInt8](repeating: 0, count: Int(EF_FRAME_HEADER_SIZE))
        if let sealer {
            guard ef_frame_encode_sealed(&header, type.rawValue, flags, codec, aux, id, payload.count) == 0 else {
                throw HostilePeerError.protocol("encode")
            }
            var body = payload
            var tag = [UInt8](repeating: 0, count: Int(EF_SESSION_TAG_SIZE))
            guard ef_seal_frame(sealer, header, &body, body.count, &tag) == 0 else {
                throw HostilePeerError.protocol("seal")
            }
            try write(header + body + tag)
            return
        }
        var vectors = [iovec(), iovec()]
        let count = payload.withUnsafeBufferPointer { bytes in
            ef_frame_encode(&header, type.rawValue, flags, codec, aux, id, bytes.baseAddress, bytes.count, &vectors)
        }
        guard count > 0 else { throw HostilePeerError.protocol("encode") }
        try write(header)
        if !payload.isEmpty { try write(payload) }
    }

    /// A RESULT of one parcel (a single-receipt envelope, uncompressed) with `table` as its body.
    /// - Parameter digest: what the parcel held, when the master asked for it (`HostileFrame.digest`).
    func sendResult(step: UInt32, sequence: UInt64, table: [UInt8], digest: ProcessedRange? = nil) throws {
        let envelope = ResultEnvelope(kind: .single, entries: [.init(sequence: sequence, processed: digest)])
            .encoded()
        try send(.result, aux: step, id: sequence, payload: envelope + table)
    }

    /// The next frame, or nil when none came within `timeout` seconds.
    /// - Throws: when the master closed the connection or sent bytes that are no frame.
    func read(timeout: Double) throws -> HostileFrame? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while true {
            var frame = ef_frame()
            var tag: UnsafePointer<UInt8>?
            let consumed = buffer.withUnsafeBufferPointer {
                opener == nil
                    ? ef_frame_parse($0.baseAddress, $0.count, 256 << 20, &frame)
                    : ef_frame_parse_sealed($0.baseAddress, $0.count, 256 << 20, &frame, &tag)
            }
            if consumed > 0 {
                var payload =
                    frame.payload.len == 0
                    ? [] : Array(UnsafeBufferPointer(start: frame.payload.ptr, count: frame.payload.len))
                if let opener {
                    let header = Array(buffer[0..<Int(EF_FRAME_HEADER_SIZE)])
                    let tagBytes = Array(UnsafeBufferPointer(start: tag, count: Int(EF_SESSION_TAG_SIZE)))
                    guard ef_seal_open(opener, header, &payload, payload.count, tagBytes) == 0 else {
                        throw HostilePeerError.protocol("a sealed frame that does not open")
                    }
                }
                let parsed = HostileFrame(
                    type: frame.type, flags: frame.flags, codec: frame.codec, aux: frame.aux, id: frame.id,
                    payload: payload)
                buffer.removeFirst(consumed)
                if parsed.kind == .step,
                    let step = try? JSONDecoder().decode(StepAnnouncement.self, from: Data(payload))
                {
                    announcement = step
                }
                return parsed
            }
            guard consumed == Int(EF_ENEEDMORE) else { throw HostilePeerError.protocol("frame \(consumed)") }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return nil }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, Int32(max(1, left * 1000))) <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 64 << 10)
            let got = recv(fd, &chunk, chunk.count, 0)
            guard got > 0 else { throw HostilePeerError.closed }
            buffer += chunk[0..<got]
        }
    }

    /// Serves PARCELs until the master closes or says BYE: `parcel` answers each (or not), and a
    /// heartbeat goes out every 0.2 s whatever it does, so the master never presumes us dead.
    func serveParcels(_ parcel: (HostileFrame) throws -> Void) throws {
        var lastBeat = Date()
        while true {
            if -lastBeat.timeIntervalSinceNow >= 0.2 {
                try send(.heartbeat)
                lastBeat = Date()
            }
            guard let frame = try read(timeout: 0.1) else { continue }
            switch frame.kind {
            case .parcel: try parcel(frame)
            case .bye: return
            default: continue
            }
        }
    }

    private func write(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw HostilePeerError.closed }
            sent += n
        }
    }
}

/// Serialized count tables for a hostile peer's answers.
enum HostileTable {
    /// The honest answer: the parcel's words counted (`ef_counter_*`), as a worker sends them.
    static func honest(_ parcel: [UInt8]) throws -> [UInt8] {
        let counter = try WordCounter()
        try counter.feed(parcel)
        try counter.finish()
        return try counter.serializedPartitioned()
    }

    /// A table of the given words and counts, whatever they are (`EFCT`, counts as varints).
    static func forged(_ entries: [(String, UInt64)]) -> [UInt8] {
        var bytes = Array("EFCT".utf8)
        withUnsafeBytes(of: UInt32(entries.count).littleEndian) { bytes += $0 }
        for (word, count) in entries {
            bytes += varint(UInt64(word.utf8.count)) + Array(word.utf8) + varint(count)
        }
        return bytes
    }

    /// A two-partition `EFCP` table listing `word` (count 1) in both sections: in one of them it
    /// lies outside its partition, which only a check that hashes each key can catch.
    static func inBothPartitions(_ word: String) -> [UInt8] {
        let entry = varint(UInt64(word.utf8.count)) + Array(word.utf8) + varint(1)
        var bytes = Array("EFCP".utf8) + [UInt8(EF_COUNT_PART_VERSION), 0, 0, 0]
        let body = Int(EF_COUNT_PART_HEADER_SIZE) + 2 * Int(EF_COUNT_PART_SECTION_SIZE)
        for value in [UInt32(2), 0] { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        for section in 0..<2 {
            for value in [UInt64(body + section * entry.count), UInt64(entry.count), 1] {
                withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
            }
        }
        return bytes + entry + entry
    }

    private static func varint(_ value: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        var rest = value
        while rest >= 0x80 {
            out.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        out.append(UInt8(rest))
        return out
    }
}

enum HostilePeerError: Error {
    case system(String, Int32)
    case `protocol`(String)
    case closed
}

/// Test code that speaks ElasticFlow's protocol (version 3) over a raw loopback socket, to play a
/// hostile or broken peer against real `elasticflow` processes: plain frames for the handshake,
/// then sealed frames (`ef_seal_*` from the C core) under keys the test derives from the cookie.
/// Every read has a time-out, so a peer that never answers fails the test instead of hanging it.
final class HostilePeer {
    struct Frame {
        var type: UInt8
        var flags: UInt8
        var aux: UInt32
        var id: UInt64
        var payload: [UInt8]
    }

    enum PeerError: Error { case connect(Int32), closed, malformed(String), refused(String) }

    let fd: Int32
    private var sealer: OpaquePointer?
    private var opener: OpaquePointer?

    init(fd: Int32, timeout: Double = 10) {
        self.fd = fd
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit {
        close(fd)
        ef_seal_free(sealer)
        ef_seal_free(opener)
    }

    /// Connects to 127.0.0.1:port.
    static func connect(port: UInt16, timeout: Double = 10) throws -> HostilePeer {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            let error = errno
            close(fd)
            throw PeerError.connect(error)
        }
        return HostilePeer(fd: fd, timeout: timeout)
    }

    /// Connects to "127.0.0.1:PORT".
    static func connect(_ address: String, timeout: Double = 10) throws -> HostilePeer {
        try connect(port: UInt16(address.split(separator: ":").last!)!, timeout: timeout)
    }

    /// Connects, retrying for up to `seconds` while the port does not accept yet.
    static func connectWhenListening(port: UInt16, seconds: Double = 10) throws -> HostilePeer {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            do { return try connect(port: port) } catch {
                if Date() > deadline { throw error }
                usleep(20_000)
            }
        }
    }

    // MARK: bytes

    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw PeerError.closed }
            offset += written
        }
    }

    func read(exactly count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = bytes[offset...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { throw PeerError.closed }
            offset += got
        }
        return bytes
    }

    /// Whether the other side closed (or reset) the connection within the read time-out,
    /// discarding whatever it still sent before.
    func closedByPeer() -> Bool {
        var sink = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = sink.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got > 0 { continue }
            if got < 0 && errno == EINTR { continue }
            return got == 0 || errno == ECONNRESET
        }
    }

    // MARK: frames

    /// A plain (unsealed) frame's bytes, CRCs included; `version` other than 3 plays an old peer.
    static func plainFrame(
        type: UInt8, flags: UInt8 = 0, aux: UInt32 = 0, id: UInt64 = 0, payload: [UInt8],
        version: UInt8 = UInt8(EF_PROTOCOL_VERSION)
    ) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: Int(EF_FRAME_HEADER_SIZE))
        var iov = (iovec(), iovec())
        _ = withUnsafeMutablePointer(to: &iov) {
            $0.withMemoryRebound(to: iovec.self, capacity: 2) {
                ef_frame_encode(&header, type, flags, 0, aux, id, payload, payload.count, $0)
            }
        }
        if version != UInt8(EF_PROTOCOL_VERSION) {
            header[4] = version
            let crc = ef_crc32c(0, header, 28)
            withUnsafeBytes(of: crc.littleEndian) { header.replaceSubrange(28..<32, with: $0) }
        }
        return header + payload
    }

    /// One frame's bytes as they came (header, payload, and the tag when `sealed`), unchecked:
    /// for a relay.
    func readFrameBytes(sealed: Bool) throws -> [UInt8] {
        let header = try read(exactly: Int(EF_FRAME_HEADER_SIZE))
        let length = Int(
            UInt32(header[8]) | UInt32(header[9]) << 8 | UInt32(header[10]) << 16 | UInt32(header[11]) << 24)
        return header + (try read(exactly: length + (sealed ? Int(EF_SESSION_TAG_SIZE) : 0)))
    }

    func sendPlain(type: FrameType, aux: UInt32 = 0, id: UInt64 = 0, payload: [UInt8]) throws {
        try write(Self.plainFrame(type: type.rawValue, aux: aux, id: id, payload: payload))
    }

    func readPlainFrame() throws -> Frame {
        let header = try read(exactly: Int(EF_FRAME_HEADER_SIZE))
        let length = Int(
            UInt32(header[8]) | UInt32(header[9]) << 8 | UInt32(header[10]) << 16 | UInt32(header[11]) << 24)
        let payload = try read(exactly: length)
        var frame = ef_frame()
        let all = header + payload
        guard ef_frame_parse(all, all.count, all.count, &frame) == all.count else {
            throw PeerError.malformed("plain frame")
        }
        return Frame(type: frame.type, flags: frame.flags, aux: frame.aux, id: frame.id, payload: payload)
    }

    /// Seals this connection as `role` would ('M' or 'W'): frames sent use that role's key.
    func seal(_ keys: SessionKeys, role: UInt8, encrypt: Bool) {
        var raw = keys.raw
        let master = role == Hello.masterRole
        let mode: UInt32 = encrypt ? EF_SEAL_ENCRYPT : 0
        let sendKey =
            master
            ? withUnsafeBytes(of: &raw.master_to_worker) { Array($0) }
            : withUnsafeBytes(of: &raw.worker_to_master) { Array($0) }
        let openKey =
            master
            ? withUnsafeBytes(of: &raw.worker_to_master) { Array($0) }
            : withUnsafeBytes(of: &raw.master_to_worker) { Array($0) }
        sealer = ef_seal_create(sendKey, role, mode)
        opener = ef_seal_create(openKey, master ? Hello.workerRole : Hello.masterRole, mode | EF_SEAL_OPENER)
    }

    /// A sealed frame's bytes with the next counter (the counter advances: sending the same bytes
    /// twice is a replay).
    func sealedFrame(type: UInt8, flags: UInt8 = 0, aux: UInt32 = 0, id: UInt64 = 0, payload: [UInt8]) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: Int(EF_FRAME_HEADER_SIZE))
        _ = ef_frame_encode_sealed(&header, type, flags, 0, aux, id, payload.count)
        var body = payload
        var tag = [UInt8](repeating: 0, count: Int(EF_SESSION_TAG_SIZE))
        _ = ef_seal_frame(sealer, header, &body, body.count, &tag)
        return header + body + tag
    }

    func sendSealed(type: FrameType, flags: UInt8 = 0, aux: UInt32 = 0, id: UInt64 = 0, payload: [UInt8]) throws {
        try write(sealedFrame(type: type.rawValue, flags: flags, aux: aux, id: id, payload: payload))
    }

    func readSealedFrame() throws -> Frame {
        let header = try read(exactly: Int(EF_FRAME_HEADER_SIZE))
        let length = Int(
            UInt32(header[8]) | UInt32(header[9]) << 8 | UInt32(header[10]) << 16 | UInt32(header[11]) << 24)
        var payload = try read(exactly: length)
        let tag = try read(exactly: Int(EF_SESSION_TAG_SIZE))
        guard ef_seal_open(opener, header, &payload, payload.count, tag) == 0 else {
            throw PeerError.malformed("a sealed frame that does not open")
        }
        return Frame(
            type: header[5], flags: header[6],
            aux: UInt32(header[12]) | UInt32(header[13]) << 8 | UInt32(header[14]) << 16 | UInt32(header[15]) << 24,
            id: header[16..<24].reversed().reduce(0) { $0 << 8 | UInt64($1) }, payload: payload)
    }

    // MARK: handshakes

    /// Plays a master against a worker: HELLO, the worker's HELLO (proof checked), seal, AUTH,
    /// WELCOME. Returns the worker's HELLO.
    @discardableResult
    func handshakeAsMaster(cookie: String, encrypt: Bool = false) throws -> Hello {
        let secret = Array(cookie.utf8)
        let nonce = try Authentication.nonce()
        let hello = Hello(
            role: Hello.masterRole, session: SessionMode(encrypt: encrypt), nonce: nonce, threads: 1,
            name: "hostile-master")
        try sendPlain(type: .hello, payload: hello.encoded())
        let answer = try readPlainFrame()
        guard answer.type == FrameType.hello.rawValue else {
            throw PeerError.refused(String(decoding: answer.payload, as: UTF8.self))
        }
        let theirs = try Hello(decoding: answer.payload)
        seal(
            try SessionKeys(cookie: secret, masterNonce: nonce, workerNonce: theirs.nonce), role: Hello.masterRole,
            encrypt: encrypt)
        try sendSealed(
            type: .auth,
            payload: Authentication.proof(cookie: secret, role: Hello.masterRole, own: nonce, peer: theirs.nonce))
        let welcome = try readSealedFrame()
        guard welcome.type == FrameType.welcome.rawValue else { throw PeerError.malformed("no WELCOME") }
        return theirs
    }

    /// Plays a worker against a master that spoke first (it connected to us, or we joined it):
    /// its HELLO, ours with the proof, seal, its AUTH, WELCOME. Returns the master's HELLO.
    @discardableResult
    func handshakeAsWorker(cookie: String, name: String = "hostile-worker") throws -> Hello {
        let secret = Array(cookie.utf8)
        let first = try readPlainFrame()
        let theirs = try Hello(decoding: first.payload)
        let nonce = try Authentication.nonce()
        let mode = SessionMode(rawValue: theirs.session) ?? .authenticated
        let hello = Hello(
            role: Hello.workerRole, session: mode, nonce: nonce,
            proof: Authentication.proof(cookie: secret, role: Hello.workerRole, own: nonce, peer: theirs.nonce),
            threads: 1,
            name: name)
        try sendPlain(type: .hello, payload: hello.encoded())
        seal(
            try SessionKeys(cookie: secret, masterNonce: theirs.nonce, workerNonce: nonce), role: Hello.workerRole,
            encrypt: mode.encrypts)
        let auth = try readSealedFrame()
        guard auth.type == FrameType.auth.rawValue else { throw PeerError.malformed("no AUTH") }
        try sendSealed(type: .welcome, payload: [])
        return theirs
    }
}

/// A listening socket on a free loopback port, for test code that plays a worker a master
/// connects to.
final class HostileListener {
    let fd: Int32
    let port: UInt16

    init() throws {
        (fd, port) = try Loopback.bind(backlog: 16)
    }

    deinit { close(fd) }

    var address: String { "127.0.0.1:\(port)" }

    func accept() -> HostilePeer {
        HostilePeer(fd: Foundation.accept(fd, nil, nil))
    }
}

/// A process's resident memory in bytes (VmRSS in /proc/PID/status), or nil.
func residentBytes(of pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
    else { return nil }
    return kilobytes * 1024
}

import CElasticFlow
import Foundation

@testable import ElasticFlow

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
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        listen(fd, 16)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
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

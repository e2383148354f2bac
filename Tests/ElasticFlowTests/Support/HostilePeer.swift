import CElasticFlow
import Foundation

@testable import ElasticFlow

/// A peer played by test code over a real loopback socket: it speaks the wire protocol itself
/// (frames by the C core's `ef_frame_encode` / `ef_frame_parse`, HELLO and the proofs by the
/// product's `Hello` / `Authentication`), so a test can make it lie, stall or fail on purpose
/// against a real `elasticflow` process. All framing of the tests lives in this one file.
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
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw HostilePeerError.system("socket", errno) }
        var address = sockaddr_in.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) }
        }
        guard bound == 0, listen(listener, 16) == 0 else { throw HostilePeerError.system("bind/listen", errno) }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        self.listener = listener
        self.address = "127.0.0.1:\(UInt16(bigEndian: address.sin_port))"
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
}

/// One connection of a hostile peer: blocking reads with a time-out, whole-frame writes.
final class HostileConnection: @unchecked Sendable {
    // The descriptor is closed once (guarded by lock); reads and writes come from the one thread
    // serving the connection.
    private let fd: Int32
    private let lock = NSLock()
    private var closed = false
    private var buffer: [UInt8] = []
    /// The STEP the master announced (its task and options), once one came.
    private(set) var announcement: StepAnnouncement?

    init(fd: Int32) { self.fd = fd }

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
        try send(
            .hello,
            payload: Hello(role: Hello.workerRole, nonce: nonce, proof: proof, threads: 1, name: "hostile").encoded())
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
        var vectors = [iovec(), iovec()]
        let count = payload.withUnsafeBufferPointer { bytes in
            ef_frame_encode(&header, type.rawValue, flags, codec, aux, id, bytes.baseAddress, bytes.count, &vectors)
        }
        guard count > 0 else { throw HostilePeerError.protocol("encode") }
        try write(header)
        if !payload.isEmpty { try write(payload) }
    }

    /// A RESULT of one parcel (a single-receipt envelope, uncompressed) with `table` as its body.
    func sendResult(step: UInt32, sequence: UInt64, table: [UInt8]) throws {
        let envelope = ResultEnvelope(kind: .single, entries: [.init(sequence: sequence)]).encoded()
        try send(.result, aux: step, id: sequence, payload: envelope + table)
    }

    /// The next frame, or nil when none came within `timeout` seconds.
    /// - Throws: when the master closed the connection or sent bytes that are no frame.
    func read(timeout: Double) throws -> HostileFrame? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while true {
            var frame = ef_frame()
            let consumed = buffer.withUnsafeBufferPointer {
                ef_frame_parse($0.baseAddress, $0.count, 256 << 20, &frame)
            }
            if consumed > 0 {
                let payload =
                    frame.payload.len == 0
                    ? [] : Array(UnsafeBufferPointer(start: frame.payload.ptr, count: frame.payload.len))
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

extension sockaddr_in {
    static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return address
    }
}

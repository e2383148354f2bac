internal import CElasticFlow
import Foundation

/// One connection of an `EventLoop` (the C loop's connection id). `ef_loop` never hands out 0,
/// so `.unset` stands for "no connection".
struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    let rawValue: UInt64
    static let unset = ConnectionID(rawValue: 0)
    var description: String { "connection \(rawValue)" }
}

/// One timer of an `EventLoop` (`ef_loop_timer_add`'s id; never 0, so `.unset` means none).
struct TimerID: Hashable, Sendable, CustomStringConvertible {
    let rawValue: UInt64
    static let unset = TimerID(rawValue: 0)
    var description: String { "timer \(rawValue)" }
}

/// One listening socket of an `EventLoop` (`ef_loop_listen`'s id; never 0, so `.unset` means none).
struct ListenerID: Hashable, Sendable, CustomStringConvertible {
    let rawValue: UInt64
    static let unset = ListenerID(rawValue: 0)
    var description: String { "listener \(rawValue)" }
}

/// A frame as the loop delivers it: the payload is a view into the connection's read buffer,
/// valid only during the `received` callback.
struct IncomingFrame {
    var type: UInt8
    var flags: UInt8
    var codec: UInt8
    var aux: UInt32
    var id: UInt64
    var payload: UnsafeRawBufferPointer
}

/// Receives the loop's events, on the loop thread, one at a time.
protocol EventLoopHandler: AnyObject {
    func accepted(_ connection: ConnectionID)
    func connected(_ connection: ConnectionID, status: Int32, errno: Int32)
    func received(_ frame: IncomingFrame, on connection: ConnectionID)
    func closed(_ connection: ConnectionID, reason: Int32, errno: Int32)
    func drained(_ connection: ConnectionID)
    func timerFired(_ timer: TimerID)
}

extension EventLoopHandler {
    func accepted(_ connection: ConnectionID) {}
    func connected(_ connection: ConnectionID, status: Int32, errno: Int32) {}
    func drained(_ connection: ConnectionID) {}
    func timerFired(_ timer: TimerID) {}
}

/// The C core's epoll loop (`ef_loop`) on a thread of its own.
///
/// Threading: `post` and `stop` may be called from any thread; everything else only from the loop
/// thread (inside a handler callback or a posted closure), as `ef_loop` requires. That confinement
/// is what makes the `@unchecked Sendable` sound.
final class EventLoop: @unchecked Sendable {
    private(set) var handle: OpaquePointer!
    /// Set before `start`, cleared by `shutdown`; only read on the loop thread.
    var handler: EventLoopHandler?
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    init(maxPayload: Int, sendHighWater: Int) throws(ElasticFlowError) {
        var config = ef_loop_config()
        config.max_payload = maxPayload
        config.send_high_water = sendHighWater
        config.send_low_water = sendHighWater / 2
        config.read_buffer = 256 * 1024
        config.preauth_payload = EventLoop.preauthPayload
        config.on_accept = { _, user, _, connection in
            EventLoop.from(user).handler?.accepted(ConnectionID(rawValue: connection))
        }
        config.on_connect = { loop, user, connection, status in
            EventLoop.from(user).handler?.connected(
                ConnectionID(rawValue: connection), status: status, errno: ef_loop_last_errno(loop))
        }
        config.on_frame = { _, user, connection, frame in
            guard let frame else { return }
            let incoming = IncomingFrame(
                type: frame.pointee.type, flags: frame.pointee.flags, codec: frame.pointee.codec,
                aux: frame.pointee.aux, id: frame.pointee.id,
                payload: UnsafeRawBufferPointer(start: frame.pointee.payload.ptr, count: frame.pointee.payload.len))
            EventLoop.from(user).handler?.received(incoming, on: ConnectionID(rawValue: connection))
        }
        config.on_close = { loop, user, connection, reason in
            EventLoop.from(user).handler?.closed(
                ConnectionID(rawValue: connection), reason: reason, errno: ef_loop_last_errno(loop))
        }
        config.on_drain = { _, user, connection in
            EventLoop.from(user).handler?.drained(ConnectionID(rawValue: connection))
        }
        config.on_timer = { _, user, timer in
            EventLoop.from(user).handler?.timerFired(TimerID(rawValue: timer))
        }
        // The loop keeps an unretained pointer to self: self outlives the C loop (freed in deinit).
        config.user = Unmanaged.passUnretained(self).toOpaque()
        var error: Int32 = 0
        guard let handle = ef_loop_create(&config, &error) else {
            throw .core(CoreErrorCode(rawValue: error), operation: "creating the event loop")
        }
        self.handle = handle
    }

    /// The largest frame payload a connection may send before it has proved it holds the session
    /// keys (its first sealed frame passed the tag check): a HELLO, AUTH, WELCOME or a refusal
    /// fits; a stranger cannot make the loop buffer more.
    static let preauthPayload = 64 << 10

    deinit { ef_loop_free(handle) }

    private static func from(_ user: UnsafeMutableRawPointer?) -> EventLoop {
        Unmanaged<EventLoop>.fromOpaque(user!).takeUnretainedValue()
    }

    /// Runs the loop on a new thread until `stop`.
    func start(name: String) {
        let thread = Thread { [self] in
            _ = ef_loop_run(handle)
            finished.signal()
        }
        thread.name = name
        thread.stackSize = 1 << 20
        self.thread = thread
        thread.start()
    }

    /// Stops the loop and waits for its thread to end. Any thread but the loop's.
    func stopAndJoin() {
        ef_loop_stop(handle)
        if thread != nil {
            finished.wait()
            thread = nil
        }
        handler = nil
    }

    /// Runs body on the loop thread soon. Thread-safe.
    func post(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ClosureBox(body)).toOpaque()
        let status = ef_loop_post(
            handle,
            { _, argument in Unmanaged<ClosureBox>.fromOpaque(argument!).takeRetainedValue().body() }, box)
        if status != 0 {
            // The queue could not grow (out of memory): run nothing rather than leak silently.
            Unmanaged<ClosureBox>.fromOpaque(box).release()
        }
    }

    // MARK: loop thread only

    func listen(host: String, port: UInt16) throws(ElasticFlowError) -> (listener: ListenerID, port: UInt16) {
        var listener: UInt64 = 0
        var bound: UInt16 = 0
        let status = ef_loop_listen(handle, host, port, &listener, &bound)
        if status == Int32(EF_ESYS) {
            throw .io(path: "\(host):\(port)", operation: "listen on", errno: ef_loop_last_errno(handle))
        }
        if status == Int32(EF_EINVAL) {
            throw .invalidArgument("cannot listen on \(host):\(port): the host does not resolve to an address")
        }
        if status < 0 {
            throw .invalidArgument("cannot listen on \(host):\(port): \(CoreErrorCode(rawValue: status))")
        }
        return (ListenerID(rawValue: listener), bound)
    }

    func unlisten(_ listener: ListenerID) { _ = ef_loop_unlisten(handle, listener.rawValue) }

    func connect(host: String, port: UInt16) throws(ElasticFlowError) -> ConnectionID {
        var connection: UInt64 = 0
        let status = ef_loop_connect(handle, host, port, &connection)
        if status < 0 {
            throw .invalidArgument("cannot connect to \(host):\(port): address does not resolve")
        }
        return ConnectionID(rawValue: connection)
    }

    /// Queues a frame, copying its payload. Returns 0 or a negative `EF_E*` code.
    @discardableResult
    func send(
        _ connection: ConnectionID, type: UInt8, flags: UInt8 = 0, codec: UInt8 = 0, aux: UInt32 = 0, id: UInt64 = 0,
        payload: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) -> Int32 {
        ef_loop_send(
            handle, connection.rawValue, type, flags, codec, aux, id,
            payload.baseAddress?.assumingMemoryBound(to: UInt8.self),
            payload.count)
    }

    @discardableResult
    func send(_ connection: ConnectionID, type: UInt8, aux: UInt32 = 0, id: UInt64 = 0, bytes: [UInt8]) -> Int32 {
        bytes.withUnsafeBytes { send(connection, type: type, aux: aux, id: id, payload: $0) }
    }

    /// Queues a frame whose payload is written straight from `payload` (no copy); `release` runs
    /// on the loop thread once the bytes are written or the connection is gone, but only when the
    /// call returns 0 — otherwise the caller keeps the bytes.
    /// - Parameter payloadCRC: the payload's CRC32C when the caller already has it (a parcel's
    ///   receipt checksum), so the frame does not read the bytes again (`ef_loop_send_with`).
    func sendReference(
        _ connection: ConnectionID, type: UInt8, flags: UInt8, codec: UInt8, aux: UInt32, id: UInt64,
        payload: UnsafeRawBufferPointer, payloadCRC: UInt32? = nil, release: @escaping @Sendable () -> Void
    ) -> Int32 {
        let box = Unmanaged.passRetained(ClosureBox(release)).toOpaque()
        var send = ef_send()
        send.type = type
        send.flags = flags
        send.codec = codec
        send.aux = aux
        send.id = id
        send.payload = payload.baseAddress?.assumingMemoryBound(to: UInt8.self)
        send.len = payload.count
        send.has_crc = payloadCRC == nil ? 0 : 1
        send.payload_crc = payloadCRC ?? 0
        send.release = { context in Unmanaged<ClosureBox>.fromOpaque(context!).takeRetainedValue().body() }
        send.ctx = box
        let status = ef_loop_send_with(handle, connection.rawValue, &send)
        if status != 0 { Unmanaged<ClosureBox>.fromOpaque(box).release() }
        return status
    }

    /// Sends a frame whose payload is `length` bytes of file `fd` at `offset`, from the page cache
    /// to the socket (`ef_loop_send_with`, `EF_SEND_FROM_FILE`: `sendfile(2)`). The fd must stay
    /// open until the send is done (the step's `SourceFiles` outlives its loop).
    /// - Parameters:
    ///   - payloadCRC: the bytes' CRC32C, which an unsealed connection needs (the loop never reads
    ///     the bytes to send them); nil for none (a sealed frame carries no CRC: its tag covers the
    ///     payload), and then an unsealed connection refuses the send.
    ///   - bytes: the same bytes when the caller still holds them (read during the call only): a
    ///     sealed connection computes the frame's tag from them instead of reading the file back.
    func sendFile(
        _ connection: ConnectionID, type: UInt8, flags: UInt8, codec: UInt8, aux: UInt32, id: UInt64, fd: Int32,
        offset: UInt64, length: Int, payloadCRC: UInt32?, bytes: UnsafeRawBufferPointer? = nil
    ) -> Int32 {
        var send = ef_send()
        if let bytes, bytes.count == length { send.payload = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) }
        send.type = type
        send.flags = flags
        send.codec = codec
        send.aux = aux
        send.id = id
        send.len = length
        if let payloadCRC {
            send.has_crc = 1
            send.payload_crc = payloadCRC
        }
        send.options = EF_SEND_FROM_FILE
        send.file_fd = fd
        send.file_offset = offset
        return ef_loop_send_with(handle, connection.rawValue, &send)
    }

    /// Seals the connection (`ef_loop_seal`): every later frame sent is sealed with this side's
    /// key, every frame received is opened with the peer's, starting with the next one read.
    func seal(_ connection: ConnectionID, keys: SessionKeys, role: UInt8, mode: SessionMode) -> Int32 {
        var raw = keys.raw
        return ef_loop_seal(handle, connection.rawValue, &raw, role, mode.encrypts ? 1 : 0)
    }

    func close(_ connection: ConnectionID, flush: Bool) {
        _ = ef_loop_close(handle, connection.rawValue, flush ? 1 : 0)
    }

    func addTimer(milliseconds: UInt64, repeats: Bool) -> TimerID {
        var timer: UInt64 = 0
        _ = ef_loop_timer_add(handle, milliseconds, repeats ? 1 : 0, &timer)
        return TimerID(rawValue: timer)
    }

    func cancelTimer(_ timer: TimerID) { _ = ef_loop_timer_cancel(handle, timer.rawValue) }

    func peer(_ connection: ConnectionID) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let length = ef_loop_peer(handle, connection.rawValue, &buffer, buffer.count)
        return length > 0 ? String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    }

    func pending(_ connection: ConnectionID) -> Int64 { ef_loop_pending(handle, connection.rawValue) }
    /// The kernel's latest delivery-rate estimate of the connection (`ef_loop_delivery_rate`:
    /// TCP_INFO), and whether the sender limited it; nil when there is none.
    func deliveryRate(_ connection: ConnectionID) -> (bytesPerSecond: UInt64, appLimited: Bool)? {
        var rate: UInt64 = 0
        var limited: Int32 = 0
        guard ef_loop_delivery_rate(handle, connection.rawValue, &rate, &limited) == 0 else { return nil }
        return (rate, limited != 0)
    }
}

/// A closure crossing into C as an opaque pointer.
private final class ClosureBox {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

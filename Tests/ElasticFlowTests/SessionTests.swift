import CElasticFlow
import Foundation
import Logging
import Testing

@testable import ElasticFlow

/// Sessions bound to the handshake (protocol version 3), encryption, and bounded memory before
/// authentication: hostile peers played by test code (`HostilePeer`) over real loopback sockets
/// against real `elasticflow` processes or an in-process master, results compared byte for byte
/// with the single-node reference.
@Suite struct SessionTests {
    static let text = ReliabilityTests.corpus(seed: 31, bytes: 600_000)

    /// A join-only master in this process (events recorded), listening on a free port.
    static func joinOnlyMaster(cookie: String) throws -> (Master, EventRecorder, UInt16) {
        let port = try freePort()
        var configuration = ClusterConfiguration(workers: [], cookie: try Cookie(cookie))
        configuration.listen = NodeAddress(host: "127.0.0.1", port: port)
        configuration.masterProcesses = false
        configuration.parcelSize = 16 << 10
        configuration.inFlight = 2
        configuration.heartbeatTimeout = .seconds(1.0)
        configuration.heartbeatInterval = .seconds(0.2)
        return (Master(configuration: configuration), EventRecorder(), port)
    }

    static func details(_ recorder: EventRecorder, _ state: StepUpdateState) -> [String] {
        recorder.events.compactMap {
            if case .stepUpdate(_, let seen, let detail) = $0, seen == state { detail } else { nil }
        }
    }

    static func exact(_ report: StepReport) throws -> Bool {
        guard case .wordCount(let counter) = report.output else { return false }
        return try counter.rendered(format: .text) == Reference.text(text, lowercase: false)
    }

    /// Finding 2: a relay between a master's join port and a real worker passes the handshake
    /// along (the proofs check out), but cannot compute the session keys: its first forged
    /// frame is refused and that link cut, and the step is still exact.
    @Test(arguments: [FrameType.result, FrameType.heartbeat])
    func aRelayThatForgesAFrameIsCutOffAtItsFirstForgedFrame(_ forged: FrameType) throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("corpus.txt", Self.text)
        let worker = try TestWorker(cookie: "relay")
        let (master, recorder, port) = try Self.joinOnlyMaster(cookie: "relay")
        master.add(recorder)
        let step = ReliabilityTests.BackgroundStep(master, task: "wordcount", path: path)
        let toMaster = try HostilePeer.connectWhenListening(port: port)
        let toWorker = try HostilePeer.connect(worker.address)
        try toWorker.write(try toMaster.readFrameBytes(sealed: false))  // the master's HELLO
        try toMaster.write(try toWorker.readFrameBytes(sealed: false))  // the worker's HELLO, with its proof
        try toWorker.write(try toMaster.readFrameBytes(sealed: true))  // AUTH
        try toMaster.write(try toWorker.readFrameBytes(sealed: true))  // WELCOME: the master takes the link
        // Our own frame now, in the worker's name: a RESULT that claims receipt 1 (or a HEARTBEAT
        // to keep the link alive), with a tag we cannot compute.
        let payload: [UInt8] =
            forged == .result ? [0, 0, 1, 0] + [1, 0, 0, 0, 0, 0, 0, 0] + Array("forged 1000000\n".utf8) : []
        var header = [UInt8](repeating: 0, count: Int(EF_FRAME_HEADER_SIZE))
        _ = ef_frame_encode_sealed(&header, forged.rawValue, 0, 0, 1, 1, payload.count)
        try toMaster.write(header + payload + (0..<16).map { _ in UInt8.random(in: 0...255) })
        #expect(toMaster.closedByPeer())
        // A real joiner finishes the step.
        let joiner = try TestWorker(
            cookie: "relay", arguments: ["worker", "--join", "127.0.0.1:\(port)", "--threads", "2"])
        let report = try step.wait()
        #expect(try Self.exact(report))
        let downs = Self.details(recorder, .nodeDown)
        #expect(downs.contains { $0.contains("frame authentication failed") }, "\(recorder.events)")
        _ = joiner.stop()
    }

    /// A flipped byte, a replayed frame and a reflected frame (the worker's own, sent back) each
    /// cut the link at once with a clear reason, and the worker keeps serving.
    @Test func alteredReplayedAndReflectedFramesCutTheLink() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("corpus.txt", Self.text)
        let worker = try TestWorker(cookie: "s")
        for encrypt in [false, true] {
            let flipped = try HostilePeer.connect(worker.address)
            try flipped.handshakeAsMaster(cookie: "s", encrypt: encrypt)
            var frame = flipped.sealedFrame(type: FrameType.heartbeat.rawValue, payload: Array("beat".utf8))
            frame[Int(EF_FRAME_HEADER_SIZE) + 1] ^= 0x01
            try flipped.write(frame)
            #expect(flipped.closedByPeer())

            let replayed = try HostilePeer.connect(worker.address)
            try replayed.handshakeAsMaster(cookie: "s", encrypt: encrypt)
            let beat = replayed.sealedFrame(type: FrameType.heartbeat.rawValue, payload: [])
            try replayed.write(beat)
            #expect(try replayed.readSealedFrame().type == FrameType.heartbeat.rawValue)  // the echo
            try replayed.write(beat)
            #expect(replayed.closedByPeer())

            let reflected = try HostilePeer.connect(worker.address)
            try reflected.handshakeAsMaster(cookie: "s", encrypt: encrypt)
            try reflected.sendSealed(type: .heartbeat, payload: [])
            let echo = try reflected.readFrameBytes(sealed: true)
            try reflected.write(echo)
            #expect(reflected.closedByPeer())
        }
        let result = try CommandRunner.run(["count", "--workers", worker.address, "--cookie", "s", path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(Bytes(result.stdout) == Bytes(Reference.text(Self.text, lowercase: false)))
        let log = worker.stop()
        #expect(log.components(separatedBy: "frame authentication failed").count - 1 == 6, "\(log)")
    }

    /// A frame header claiming 256 MiB before authentication is refused from the header alone:
    /// plain, or sealed before its first tag passed. Memory stays flat and the worker serves.
    @Test func hugeFramesBeforeAuthenticationAreRefusedAtOnceByAWorker() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("corpus.txt", Self.text)
        let worker = try TestWorker(cookie: "m")
        let pid = worker.process.processIdentifier
        let before = try #require(residentBytes(of: pid))
        var header = [UInt8](repeating: 0, count: Int(EF_FRAME_HEADER_SIZE))
        _ = ef_frame_encode_sealed(&header, FrameType.parcel.rawValue, 0, 0, 1, 1, 256 << 20)
        let junk = [UInt8](repeating: 0x41, count: 1 << 20)
        for index in 0..<8 {
            let peer = try HostilePeer.connect(worker.address)
            if index % 2 == 1 {
                // Sealed, but not proved: a HELLO first, then the huge header.
                let hello = Hello(
                    role: Hello.masterRole, session: .authenticated, nonce: try Authentication.nonce(), threads: 1,
                    name: "m")
                try peer.sendPlain(type: .hello, payload: hello.encoded())
                _ = try peer.readPlainFrame()
            }
            try peer.write(header)
            try? peer.write(junk)  // refused already: the write may fail
            #expect(peer.closedByPeer())
        }
        let after = try #require(residentBytes(of: pid))
        #expect(after - before < 100 << 20, "VmRSS \(before) -> \(after)")
        let result = try CommandRunner.run(["count", "--workers", worker.address, "--cookie", "m", path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(Bytes(result.stdout) == Bytes(Reference.text(Self.text, lowercase: false)))
        let log = worker.stop()
        #expect(log.components(separatedBy: "frame payload longer than allowed").count - 1 == 8, "\(log)")
    }

    /// The same against a master's `--listen` port (a real process, join-only): refused at once,
    /// VmRSS flat, and a real joiner then completes an exact step.
    @Test func hugeFramesBeforeAuthenticationAreRefusedAtOnceByAMastersJoinPort() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("corpus.txt", Self.text)
        let port = try freePort()
        let master = try BackgroundCommand([
            "count", "--workers", "", "--listen", "127.0.0.1:\(port)", "--no-master-work", "--cookie", "j", path,
        ])
        var header = [UInt8](repeating: 0, count: Int(EF_FRAME_HEADER_SIZE))
        _ = ef_frame_encode_sealed(&header, FrameType.hello.rawValue, 0, 0, 0, 0, 256 << 20)
        let first = try HostilePeer.connectWhenListening(port: port)
        let before = try #require(residentBytes(of: master.process.processIdentifier))
        for peer in [first] + (try (1..<8).map { _ in try HostilePeer.connect(port: port) }) {
            _ = try peer.readPlainFrame()  // the master's HELLO
            try peer.write(header)
            #expect(peer.closedByPeer())
        }
        let after = try #require(residentBytes(of: master.process.processIdentifier))
        #expect(after - before < 100 << 20, "VmRSS \(before) -> \(after)")
        let joiner = try TestWorker(
            cookie: "j", arguments: ["worker", "--join", "127.0.0.1:\(port)", "--threads", "2"])
        let result = master.wait()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(Bytes(result.stdout) == Bytes(Reference.text(Self.text, lowercase: false)))
        _ = joiner.stop()
    }

    /// Joiners that never finish the handshake: past the cap they are closed as they arrive
    /// (noticed once), the others are closed at the handshake time-out, and the step goes on.
    @Test func unauthenticatedJoinersAreCappedAndTimedOut() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("corpus.txt", Self.text)
        let port = try freePort()
        var configuration = ClusterConfiguration(workers: [], cookie: try Cookie("cap"))
        configuration.listen = NodeAddress(host: "127.0.0.1", port: port)
        configuration.masterProcesses = false
        configuration.parcelSize = 16 << 10
        configuration.maxUnauthenticated = 3
        configuration.connectTimeout = .seconds(0.5)
        let master = Master(configuration: configuration)
        let recorder = EventRecorder()
        master.add(recorder)
        let step = ReliabilityTests.BackgroundStep(master, task: "wordcount", path: path)
        let kept = try (0..<3).map { index in
            let peer =
                index == 0 ? try HostilePeer.connectWhenListening(port: port) : try HostilePeer.connect(port: port)
            #expect(try peer.readPlainFrame().type == FrameType.hello.rawValue)  // greeted
            return peer
        }
        for _ in 0..<3 {
            let excess = try HostilePeer.connect(port: port)
            #expect(throws: HostilePeer.PeerError.self) { try excess.readPlainFrame() }  // closed, never greeted
        }
        for peer in kept { #expect(peer.closedByPeer()) }  // the handshake time-out
        let joiner = try TestWorker(
            cookie: "cap", arguments: ["worker", "--join", "127.0.0.1:\(port)", "--threads", "2"])
        let report = try step.wait()
        #expect(try Self.exact(report))
        let refused = Self.details(recorder, .joinRefused)
        #expect(refused.filter { $0.contains("have not completed the handshake") }.count == 1, "\(refused)")
        #expect(refused.filter { $0.contains("handshake not completed in time") }.count == 3, "\(refused)")
        _ = joiner.stop()
    }

    /// The same cap on a worker (in this process, so the cap can be small): connections past it
    /// are closed at once, those under it still complete a handshake.
    @Test func aWorkerCapsConnectionsThatHaveNotAuthenticated() throws {
        var configuration = WorkerConfiguration(
            listen: NodeAddress(host: "127.0.0.1", port: 0), cookie: try Cookie("w"))
        configuration.maxUnauthenticated = 3
        configuration.threads = 1
        let log = RecordingLogHandler.Store()
        let worker = try Worker(configuration: configuration, logger: RecordingLogHandler.logger(log))
        try worker.start()
        defer {
            worker.shutdown()
            worker.wait()
        }
        let address = worker.address.description
        let kept = try (0..<3).map { _ in try HostilePeer.connect(address) }
        // Each kept connection is accepted before the next is made: the worker answers a HELLO.
        let excess = try (0..<3).map { _ in try HostilePeer.connect(address) }
        for peer in excess {
            #expect(throws: (any Error).self) { try peer.handshakeAsMaster(cookie: "w") }
        }
        for peer in kept { try peer.handshakeAsMaster(cookie: "w") }
        let capped = log.all.filter { $0.message.contains("have not completed the handshake") }
        #expect(capped.count == 1, "\(log.all.map(\.message))")
        // A refusal is a warning naming this worker and the refused peer.
        #expect(capped.first?.level == .warning && capped.first?.metadata["node"] == "\(worker.name)")
        #expect(capped.first?.metadata["peer"] != nil)
    }

    /// `--encrypt` end to end: exact in copy mode (from files, compression none: the encrypted
    /// payload is copied from a pread, not sent with sendfile), with lz4, and with shared input.
    @Test(arguments: [["--compression", "none"], ["--compression", "lz4"], ["--shared-input"]])
    func encryptedStepsAreExact(_ mode: [String]) throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("corpus.txt", Self.text)
        let plain = try TestWorker(cookie: "e")
        let strict = try TestWorker(
            cookie: "e", arguments: ["worker", "--listen", "127.0.0.1:0", "--threads", "2", "--encrypt"])
        let result = try CommandRunner.run(
            [
                "count", "--encrypt", "--workers", "\(plain.address),\(strict.address)", "--cookie", "e",
                "--no-master-work",
                "--parcel-size", "96KiB",
            ] + mode + [path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(Bytes(result.stdout) == Bytes(Reference.text(Self.text, lowercase: false)))
    }

    @Test func aWorkerThatRequiresEncryptionRefusesAPlainMaster() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("corpus.txt", Array("a b\n".utf8))
        let strict = try TestWorker(
            cookie: "e", arguments: ["worker", "--listen", "127.0.0.1:0", "--threads", "1", "--encrypt"])
        let result = try CommandRunner.run(["count", "--workers", strict.address, "--cookie", "e", path])
        #expect(result.status != 0)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(result.stderr.contains("requires encryption"), "\(result.stderr)")
        #expect(strict.stop().contains("requires encryption"))
    }

    /// Protocol version 2 on either side: refused with a clear line.
    @Test func aVersion2PeerIsRefusedOnBothSides() throws {
        let worker = try TestWorker(cookie: "v")
        let old = try HostilePeer.connect(worker.address)
        try old.write(HostilePeer.plainFrame(type: FrameType.hello.rawValue, payload: [2, 0, 0x4D], version: 2))
        #expect(old.closedByPeer())
        #expect(worker.stop().contains("another protocol version (this worker speaks 3)"))

        let directory = try TemporaryDirectory()
        let path = try directory.file("corpus.txt", Array("a b\n".utf8))
        let fake = try HostileListener()
        let master = try BackgroundCommand(["count", "--workers", fake.address, "--cookie", "v", path])
        let peer = fake.accept()
        _ = try peer.readPlainFrame()
        try peer.write(HostilePeer.plainFrame(type: FrameType.hello.rawValue, payload: [2, 0, 0x57], version: 2))
        let result = master.wait()
        #expect(result.status != 0)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(result.stderr.contains("speaks another protocol version (this master speaks 3)"), "\(result.stderr)")
    }

    /// A hostile worker (it holds the cookie) answers with an ERROR of newlines, ANSI escapes and
    /// 8 MiB of text: the master's one error line shows it escaped and cut.
    @Test func aHostileWorkersErrorTextIsEscapedAndCut() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("corpus.txt", Array("a b\n".utf8))
        let fake = try HostileListener()
        let master = try BackgroundCommand([
            "count", "--workers", fake.address, "--cookie", "x", "--no-master-work", path,
        ])
        let peer = fake.accept()
        try peer.handshakeAsWorker(cookie: "x")
        let step = try peer.readSealedFrame()
        #expect(step.type == FrameType.step.rawValue)
        let message = Array("no\nsuch\u{1B}[31mtask\r".utf8) + [UInt8](repeating: 0x41, count: 8 << 20)
        try peer.sendSealed(type: .error, aux: step.aux, id: 0, payload: message)
        let result = master.wait()
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stderr.prefix(2000))")
        #expect(result.stderr.contains("no\\nsuch\\x1b[31mtask\\r"), "\(result.stderr.prefix(2000))")
        #expect(result.stderr.contains("…(\(message.count) bytes)"), "\(result.stderr.prefix(2000))")
        #expect(result.stderr.utf8.count < 2000)
    }

    @Test func peerTextIsEscapedAndCut() {
        #expect(PeerText.escaped(Array("plain é text".utf8)) == "plain é text")
        #expect(PeerText.escaped([0x0A, 0x1B, 0x5B, 0x6D, 0x00, 0xFF, 0x5C]) == "\\n\\x1b[m\\x00\\xff\\\\")
        #expect(PeerText.escaped([0xC2, 0x9B]) == "\\xc2\\x9b")  // the 8-bit CSI
        // A line separator and a right-to-left override: shown, not obeyed.
        #expect(PeerText.escaped(Array("a\u{2028}b\u{202E}c".utf8)) == "a\\u{2028}b\\u{202E}c")
        #expect(
            PeerText.escaped([UInt8](repeating: 0x41, count: 600)) == String(repeating: "A", count: 512)
                + "…(600 bytes)")
    }
}

/// A real `elasticflow` process run in the background: its pid while it runs, its result at the
/// end (both pipes read concurrently, so a large output never blocks it).
final class BackgroundCommand: @unchecked Sendable {
    let process = Process()
    private let output = privatePipe()
    private let errors = privatePipe()
    private let outputData = LockedData()
    private let errorData = LockedData()
    private let group = DispatchGroup()

    init(_ arguments: [String]) throws {
        process.executableURL = CommandRunner.executable
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        for (pipe, data) in [(output, outputData), (errors, errorData)] {
            group.enter()
            DispatchQueue.global().async { [group] in
                data.set(pipe.fileHandleForReading.readDataToEndOfFile())
                group.leave()
            }
        }
    }

    func wait() -> CommandResult {
        group.wait()
        process.waitUntilExit()
        return CommandResult(
            status: process.terminationStatus, stdout: Array(outputData.get()),
            stderr: String(decoding: errorData.get(), as: UTF8.self))
    }

    deinit {
        if process.isRunning { process.terminate() }
    }
}

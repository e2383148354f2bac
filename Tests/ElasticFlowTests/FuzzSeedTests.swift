import CElasticFlow
import Foundation
import Testing

@testable import ElasticFlow

/// The fuzz targets' seed corpora (Fuzz/corpus/<target>/seed-*), made here by the real encoders so
/// they follow the formats: this test fails when a committed seed is no longer what the encoders
/// make, and `make fuzz-seeds` (EF_WRITE_FUZZ_SEEDS=1) rewrites them. Each seed is also decoded
/// here, so a seed that no decoder accepts cannot be committed. Reproducers of findings
/// (Fuzz/corpus/<target>/repro-*) are kept as found and run by the smoke run of `make test`.
@Suite struct FuzzSeedTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus")

    static let text = Array("the quick brown fox jumps over the lazy dog\nThe Dog sleeps, the fox runs\n".utf8)

    static func frame(type: FrameType, flags: UInt8 = 0, aux: UInt32 = 0, id: UInt64 = 1, _ payload: [UInt8])
        -> [UInt8]
    {
        var header = [UInt8](repeating: 0, count: Int(EF_FRAME_HEADER_SIZE))
        var iov = (iovec(), iovec())
        let rc = withUnsafeMutablePointer(to: &iov) { pair in
            pair.withMemoryRebound(to: iovec.self, capacity: 2) { iovs in
                ef_frame_encode(&header, type.rawValue, flags, 0, aux, id, payload, payload.count, iovs)
            }
        }
        precondition(rc >= 1)
        return header + payload
    }

    static func hello(role: UInt8, proof: Bool) -> [UInt8] {
        let nonce = [UInt8](repeating: role, count: Int(EF_AUTH_NONCE_SIZE))
        let peer = [UInt8](repeating: 0x5A, count: Int(EF_AUTH_NONCE_SIZE))
        let proofBytes =
            proof ? Authentication.proof(cookie: Array("fuzzing-cookie".utf8), role: role, own: nonce, peer: peer) : []
        return Hello(
            role: role, session: .authenticated, nonce: nonce, proof: proofBytes, threads: 4, name: "node-\(role)"
        )
        .encoded()
    }

    static func counter(partitions: Int) throws -> WordCounter {
        let counter = try WordCounter(partitions: partitions)
        try counter.feed(text)
        try counter.finish()
        return counter
    }

    static let envelope = ResultEnvelope(
        kind: .combined,
        entries: [
            .init(sequence: 1, processed: ProcessedRange(start: 0, length: 70, lines: 2, checksum: 7, fileSize: 140)),
            .init(sequence: 2, processed: ProcessedRange(start: 70, length: 70, lines: 2, checksum: 9, fileSize: 140)),
        ])

    static let flowValue = FlowValue.dictionary([
        "counts": .array([.int(0), .int(-1), .int(1 << 40), .double(0.5), .null, .bool(true), .bool(false)]),
        "name": .string("fox é 🦊"), "raw": .bytes([0, 1, 0xFF]), "nested": .dictionary(["a": .array([])]),
    ])

    static let receipts = (1...3).map {
        Receipt(
            step: 1, sequence: $0, partition: UInt32($0 % 2), offset: $0 * 100, length: 100, items: 5, checksum: 0xABCD)
    }

    static func stepRecord() throws -> [UInt8] {
        var record = StepRecord(
            step: 1, name: "seed", task: "wordcount", sources: ["a.txt", "b.txt"], parcelSize: 4096)
        record.timeline = [StepRecord.Event(state: .pending, time: 1_700_000_000, detail: "created")]
        return try StepJournal.encodedRecord(record)
    }

    /// Every seed: target, name, bytes.
    static func seeds() throws -> [(String, String, [UInt8])] {
        let codec = try Codec()
        var seeds: [(String, String, [UInt8])] = []
        let zstd = try codec.compress(text, with: Compression(parsing: "zstd"))
        seeds.append(("frame", "hello", frame(type: .hello, Self.hello(role: Hello.workerRole, proof: true))))
        seeds.append(("frame", "heartbeat", frame(type: .heartbeat, [])))
        seeds.append(
            ("frame", "parcel-zstd", frame(type: .parcel, flags: parcelFlags(compressed: true, attempt: 1), zstd)))
        seeds.append(("frame", "result", frame(type: .result, id: 2, envelope.encoded() + zstd)))
        seeds.append(("frame", "error", frame(type: .error, Array("refused: bad cookie".utf8))))
        for name in ["none", "lz4", "zstd"] {
            seeds.append(("codec", name, try codec.compress(text, with: Compression(parsing: name))))
        }
        // A bomb: a small buffer that records a large size (refused from the header alone).
        seeds.append(
            (
                "codec", "zstd-bomb",
                try codec.compress([UInt8](repeating: 0, count: 1 << 20), with: Compression(parsing: "zstd"))
            ))
        seeds.append(("codec", "text", [2, 1] + text))  // the round trip's codec and level, then data
        for partitions in [1, 4, 16] {
            let counter = try counter(partitions: partitions)
            seeds.append(("count", "efct-\(partitions)", try counter.serialized()))
            seeds.append(("count", "efcp-\(partitions)", try counter.serializedPartitioned()))
        }
        seeds.append(("count", "text", [3, 1] + text))  // the round trip's partitions and flags, then text
        // The proof check: role, the peer's nonce, our nonce, the proof, then the cookie.
        let peer = [UInt8](repeating: 1, count: 32), own = [UInt8](repeating: 2, count: 32),
            cookie = Array("cookie".utf8)
        let proof = Authentication.proof(cookie: cookie, role: Hello.workerRole, own: peer, peer: own)
        seeds.append(("auth", "valid", [Hello.workerRole] + peer + own + proof + cookie))
        seeds.append(("hello", "master", hello(role: Hello.masterRole, proof: false)))
        seeds.append(("hello", "worker", hello(role: Hello.workerRole, proof: true)))
        seeds.append(("result_envelope", "combined", envelope.encoded()))
        seeds.append(
            ("result_envelope", "single", ResultEnvelope(kind: .single, entries: [.init(sequence: 9)]).encoded()))
        seeds.append(
            (
                "result_envelope", "range",
                RangeRequest(range: ByteRange(source: 1, offset: 10, length: 20), fileSize: 30).encoded()
            ))
        seeds.append(("flow_value", "dictionary", flowValue.encoded()))
        seeds.append(("flow_value", "int", FlowValue.int(-12345).encoded()))
        seeds.append(
            (
                "checkpoint", "checkpoint",
                StepCheckpoint(
                    step: 1, durableLogLength: 90, aggregated: [1, 3],
                    aggregate: try counter(partitions: 4).serialized()
                ).encoded()
            ))
        seeds.append(("checkpoint", "result", StepResultFile.encode(step: 1, result: flowValue.encoded())))
        let log = receipts.map { Array((StepJournal.logLine($0) + "\n").utf8) }.joined()
        seeds.append(("receipts_log", "three", Array(log)))
        seeds.append(("receipts_log", "torn", Array(log) + Array("1/4/0@400+10".utf8)))
        // Lines without their checksum, as journals written before line checksums hold.
        seeds.append(("receipts_log", "bare", Array(receipts.map { Array(($0.description + "\n").utf8) }.joined())))
        seeds.append(("step_record", "pending", try stepRecord()))
        return seeds
    }

    @Test func seedsAreWhatTheEncodersMake() throws {
        let write = ProcessInfo.processInfo.environment["EF_WRITE_FUZZ_SEEDS"] == "1"
        for (target, name, bytes) in try Self.seeds() {
            let directory = Self.corpus.appendingPathComponent(target)
            let file = directory.appendingPathComponent("seed-\(name)")
            if write {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                try Data(bytes).write(to: file)
            } else {
                let current = (try? Data(contentsOf: file)).map(Array.init) == bytes
                #expect(
                    current,
                    "Fuzz/corpus/\(target)/seed-\(name) is not what the encoders make now: run `make fuzz-seeds`")
            }
        }
    }

    /// Each Swift decoder accepts its seeds, so the fuzzers start from valid inputs.
    @Test func seedsDecode() throws {
        let seeds = try Self.seeds()
        func of(_ target: String) -> [[UInt8]] { seeds.filter { $0.0 == target }.map(\.2) }
        for bytes in of("hello") { _ = try Hello(decoding: bytes) }
        for bytes in of("flow_value") { #expect(try FlowValue(decoding: bytes).encoded() == bytes) }
        #expect(try ResultEnvelope.decode(Self.envelope.encoded()).0 == Self.envelope)
        let (_, aggregate) = try #require(
            of("checkpoint").first.map { bytes in
                (0, try StepCheckpoint(decoding: bytes, path: "checkpoint", step: 1).aggregate)
            })
        #expect(try WordCounter(partitions: 2).merge(serialized: aggregate) > 0)
        let log = try #require(of("receipts_log").first)
        #expect(
            try StepJournal.scan(log, durableLength: log.count, step: 1, sources: 2, path: "log").receipts.count == 3)
        _ = try StepJournal.decodeRecord(try Self.stepRecord(), path: "step.json", step: 1)
    }
}

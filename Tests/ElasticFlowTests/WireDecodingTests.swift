import Testing

@testable import ElasticFlow

/// The decoders of what peers send (Cluster/Wire.swift, Cluster/ResultEnvelope.swift): every
/// truncation and every field out of range is refused with a one-line error. The fuzz targets
/// `hello` and `result_envelope` try the rest.
@Suite struct WireDecodingTests {
    func refused(_ body: () throws -> Void) -> Bool {
        do {
            try body()
            return false
        } catch let error as ElasticFlowError {
            return !error.description.isEmpty && !error.description.contains("\n")
        } catch {
            return false
        }
    }

    @Test func everyTruncatedOrMisshapenHelloIsRefused() throws {
        let nonce = [UInt8](repeating: 7, count: 32)
        let full = Hello(role: Hello.workerRole, nonce: nonce, proof: nonce, threads: 3, name: "w1").encoded()
        let hello = try Hello(decoding: full)
        #expect(hello.nonce == nonce && hello.proof == nonce && hello.threads == 3 && hello.name == "w1")
        for length in 0..<full.count {
            #expect(refused { _ = try Hello(decoding: Array(full[..<length])) }, "a HELLO cut to \(length) bytes")
        }
        // The proof's length byte is the first byte where HELLOs with and without a proof differ:
        // only 0 and 32 are valid.
        let bare = Hello(role: Hello.workerRole, nonce: nonce, threads: 3, name: "w1").encoded()
        let at = try #require((0..<min(full.count, bare.count)).first { full[$0] != bare[$0] })
        for proofLength: UInt8 in [1, 31, 33, 255] {
            var bad = full
            bad[at] = proofLength
            #expect(refused { _ = try Hello(decoding: bad) }, "a proof of \(proofLength) bytes")
        }
    }

    @Test func everyTruncatedOrMisshapenEnvelopeIsRefused() throws {
        let ranged = ResultEnvelope(
            kind: .combined,
            entries: (1...3).map {
                .init(sequence: $0, processed: ProcessedRange(start: 0, length: 1, lines: 1, checksum: 0, fileSize: 1))
            })
        let full = ranged.encoded()
        let (decoded, body) = try ResultEnvelope.decode(full + [0xAB])
        #expect(decoded == ranged && body == full.count)
        for length in 0..<full.count {
            #expect(refused { _ = try ResultEnvelope.decode(Array(full[..<length])) }, "cut to \(length) bytes")
        }
        let single = ResultEnvelope(kind: .single, entries: [.init(sequence: 1)]).encoded()
        let cases: [(String, [UInt8])] = [
            ("unknown kind", [2] + single.dropFirst()),
            ("unknown flags", [0, 2] + single.dropFirst(2)),
            ("no receipts", [1, 0, 0, 0]),
            ("over 4096 receipts", [1, 0] + [0x01, 0x10] + [UInt8](repeating: 0, count: 4097 * 8)),
            ("a single result listing two", [0, 0, 2, 0] + [UInt8](repeating: 0, count: 16)),
        ]
        for (what, bytes) in cases { #expect(refused { _ = try ResultEnvelope.decode(bytes) }, "\(what)") }
    }

    @Test func everyRangeRequestOutsideItsFileIsRefused() throws {
        let valid = RangeRequest(range: ByteRange(source: 2, offset: 10, length: 5), fileSize: 15)
        #expect(try RangeRequest(decoding: valid.encoded()) == valid)
        for length in [0, 27, 29] {
            let bytes = Array((valid.encoded() + [0]).prefix(length))
            #expect(refused { _ = try RangeRequest(decoding: bytes) }, "\(length) bytes")
        }
        for (offset, length, size) in [(10, 0, 15), (16, 1, 15), (10, 6, 15), (UInt64.max, 2, UInt64.max)]
            as [(UInt64, UInt64, UInt64)]
        {
            let bytes = RangeRequest(range: ByteRange(source: 0, offset: offset, length: length), fileSize: size)
                .encoded()
            #expect(refused { _ = try RangeRequest(decoding: bytes) }, "offset \(offset) length \(length) of \(size)")
        }
    }
}

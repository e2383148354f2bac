import Foundation
import Testing

@testable import ElasticFlow

@Suite struct CompressionTests {
    static let codecs: [Compression] = [.none, .lz4, .lz4Fast(acceleration: 8), .zstd(level: 1), .zstd(level: 9)]

    @Test(arguments: codecs)
    func roundTripsTextAndRandomBytes(_ compression: Compression) throws {
        let codec = try Codec()
        var generator = CorpusGenerator(seed: 7)
        var random = RandomText(state: 3)
        for input in [[], [42], generator.generate(byteCount: 300_000), random.bytes(100_000)] {
            let packed = try codec.compress(input, with: compression)
            #expect(try codec.decompress(packed, limit: input.count) == input)
        }
    }

    @Test func compressesText() throws {
        let codec = try Codec()
        var generator = CorpusGenerator(seed: 7)
        let text = generator.generate(byteCount: 1 << 20)
        // The generated text compresses about 1.6x with lz4 and 2.7x with zstd -3 (checked with the
        // lz4 and zstd command-line tools); these bounds only say the codecs really compress.
        #expect(try codec.compress(text, with: .lz4).count < text.count * 8 / 10)
        #expect(try codec.compress(text, with: .zstd(level: 3)).count < text.count / 2)
        #expect(try codec.compress(text, with: .zstd(level: 3)).count < (try codec.compress(text, with: .lz4)).count)
    }

    @Test func refusesADecompressionBomb() throws {
        let codec = try Codec()
        let zeros = [UInt8](repeating: 0, count: 8 << 20)
        let bomb = try codec.compress(zeros, with: .zstd(level: 3))
        #expect(bomb.count < 4096)
        #expect(throws: Codec.overLimit(8 << 20, 1 << 20)) {
            try codec.decompress(bomb, limit: 1 << 20)
        }
        #expect(Codec.overLimit(8 << 20, 1 << 20).description.contains("8388608 bytes, over the 1MiB limit"))
    }

    /// A bomb within the limit (a 6 KB zstd frame expanding to 200 MiB) is decompressed, and the
    /// pool thread gives the 200 MiB back after the job: its buffers return to their normal size.
    @Test(arguments: [Compression.zstd(level: 3), .lz4])
    func buffersGrownByABombAreGivenBack(_ compression: Compression) throws {
        let codec = try Codec()
        let bomb = try codec.compress([UInt8](repeating: UInt8(ascii: "a"), count: 200 << 20), with: compression)
        #expect(bomb.count < 1 << 20)
        let pool = try WorkerPool(threads: 1, name: "bomb-test", scratchCapacity: 4 << 20)
        let capacities = Locked<[Int]>([])
        let done = DispatchSemaphore(value: 0)
        let shared = bomb
        pool.submit { context in
            let grown = shared.withUnsafeBytes { bytes in
                (try? context.codec.decompress(bytes, into: context.scratch, limit: 256 << 20)) ?? -1
            }
            capacities.withLock { $0 = [grown, context.scratch.capacity] }
            done.signal()
        }
        done.wait()
        pool.submit { context in
            capacities.withLock { $0.append(context.scratch.capacity) }
            done.signal()
        }
        done.wait()
        #expect(capacities.withLock { $0 } == [200 << 20, 200 << 20, 4 << 20])
        pool.shutdown()
    }

    @Test func refusesCorruptInput() throws {
        let codec = try Codec()
        var generator = CorpusGenerator(seed: 9)
        let packed = try codec.compress(generator.generate(byteCount: 50_000), with: .lz4)
        #expect(throws: ElasticFlowError.self) {
            try codec.decompress(Array(packed.prefix(packed.count / 2)), limit: 1 << 20)
        }
        #expect(throws: ElasticFlowError.self) { try codec.decompress([1, 2, 3], limit: 1 << 20) }
        var badMagic = packed
        badMagic[0] ^= 0xFF
        #expect(throws: ElasticFlowError.self) { try codec.decompress(badMagic, limit: 1 << 20) }
    }

    @Test func parsesCompressionNames() throws {
        #expect(try Compression(parsing: "none") == .none)
        #expect(try Compression(parsing: "lz4") == .lz4)
        #expect(try Compression(parsing: "zstd") == .zstd(level: 1))
        #expect(try Compression(parsing: "zstd:19") == .zstd(level: 19))
        #expect(try Compression(parsing: "lz4:1") == .lz4)
        #expect(try Compression(parsing: "lz4:8") == .lz4Fast(acceleration: 8))
        for bad in ["gzip", "zstd:0", "zstd:20", "zstd:x", "lz4:0", "lz4:x", "lz4:70000", ""] {
            #expect(throws: ElasticFlowError.self) { try Compression(parsing: bad) }
        }
    }
}

// Wire frames and their checksum, straight from the C core (CElasticFlow): ef_frame_encode computes
// the payload's CRC32C and fills the header, ef_frame_parse checks both checksums and returns a view.
// No Swift API wraps them yet, so this suite calls C directly; the pointers stay inside closures.
import Benchmark
import BenchmarkSupport
import CElasticFlow

let benchmarks: @Sendable () -> Void = {
    useDefaultConfiguration()
    let parcel = sampleParcel()

    Benchmark("CRC32C of 4 MiB") { benchmark in
        parcel.withUnsafeBufferPointer { payload in
            measure(benchmark, bytes: payload.count) {
                blackHole(ef_crc32c(0, payload.baseAddress, payload.count))
            }
        }
    }

    // A 4 MiB parcel frame, and a 64-byte one the size of a control message, 1,000 per iteration
    // (a single one takes about as long as reading the clock).
    for payloadSize in [parcel.count, 64] {
        let payload = Array(parcel[..<payloadSize])
        let small = payloadSize < 4096
        let label = small ? "\(payloadSize) B payload (per frame; 1,000 per iteration)" : "4 MiB payload"
        let configuration = Benchmark.Configuration(scalingFactor: small ? .kilo : .one)

        Benchmark("Frame encode, \(label)", configuration: configuration) { benchmark in
            var header = [UInt8](repeating: 0, count: Int(EF_FRAME_HEADER_SIZE))
            var iov = (iovec(), iovec())
            payload.withUnsafeBufferPointer { payload in
                header.withUnsafeMutableBufferPointer { header in
                    withUnsafeMutablePointer(to: &iov) { iovPair in
                        iovPair.withMemoryRebound(to: iovec.self, capacity: 2) { iov in
                            measure(benchmark, bytes: payload.count * benchmark.scaledIterations.count) {
                                for _ in benchmark.scaledIterations {
                                    blackHole(
                                        ef_frame_encode(
                                            header.baseAddress, UInt8(EF_FRAME_PARCEL.rawValue), 0, 0, 0, 42,
                                            payload.baseAddress, payload.count, iov))
                                }
                            }
                        }
                    }
                }
            }
        }

        let wire = encodedFrame(payload)
        Benchmark("Frame parse (both checksums), \(label)", configuration: configuration) { benchmark in
            var frame = ef_frame()
            wire.withUnsafeBufferPointer { wire in
                measure(benchmark, bytes: wire.count * benchmark.scaledIterations.count) {
                    for _ in benchmark.scaledIterations {
                        blackHole(ef_frame_parse(wire.baseAddress, wire.count, wire.count, &frame))
                    }
                }
            }
            precondition(frame.payload.len == payload.count, "the frame did not parse")
        }
    }
}

/// Header and payload laid out contiguously, as they arrive from the socket.
private func encodedFrame(_ payload: [UInt8]) -> [UInt8] {
    var header = [UInt8](repeating: 0, count: Int(EF_FRAME_HEADER_SIZE))
    var iov = (iovec(), iovec())
    let result = payload.withUnsafeBufferPointer { payload in
        header.withUnsafeMutableBufferPointer { header in
            withUnsafeMutablePointer(to: &iov) { iovPair in
                iovPair.withMemoryRebound(to: iovec.self, capacity: 2) { iov in
                    ef_frame_encode(
                        header.baseAddress, UInt8(EF_FRAME_PARCEL.rawValue), 0, 0, 0, 42, payload.baseAddress,
                        payload.count, iov)
                }
            }
        }
    }
    precondition(result > 0, "ef_frame_encode failed: \(result)")
    return header + payload
}

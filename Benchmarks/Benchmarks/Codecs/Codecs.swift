// Parcel codecs through the public Swift API (`Codec`, over ef_codec_compress / ef_codec_decompress):
// one 4 MiB parcel of generated text per iteration. MB/s counts uncompressed bytes both ways, so
// compress and decompress figures compare directly. Each call returns a fresh array, as the API
// does: that allocation (and its zero fill) is part of what is measured.
import Benchmark
import BenchmarkSupport
import ElasticFlow

let benchmarks: @Sendable () -> Void = {
    useDefaultConfiguration()
    let parcel = sampleParcel()
    let codec = try! Codec()

    for compression in [Compression.none, .lz4, .zstd(level: 1), .zstd(level: 3)] {
        let compressed = try! codec.compress(parcel, with: compression)
        // The size goes in the name: it is a property of the data, not a measurement that varies.
        let percent = Double(compressed.count * 1000 / parcel.count) / 10
        let label = "\(compression), 4 MiB parcel → \(percent)%"

        Benchmark("Compress \(label)") { benchmark in
            try measure(benchmark, bytes: parcel.count) {
                blackHole(try codec.compress(parcel, with: compression))
            }
        }

        Benchmark("Decompress \(label)") { benchmark in
            try measure(benchmark, bytes: parcel.count) {
                blackHole(try codec.decompress(compressed, limit: parcel.count))
            }
        }
    }
}

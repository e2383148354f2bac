import Benchmark
import ElasticFlow

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Megabytes (10^6 bytes) per second of input, measured per iteration around the operation only.
///
/// The benchmark package reports time per iteration and iterations per second; a custom metric lets
/// the table show MB/s directly, so parcels of any size read the same way.
public let megabytesPerSecond = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)

/// What every suite measures: time, MB/s, and how often the measured code calls malloc.
public func useDefaultConfiguration() {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, megabytesPerSecond, .mallocCountTotal],
        // Plain numbers: 2300 MB/s should not print as "2 K".
        units: [megabytesPerSecond: .count, .mallocCountTotal: .count],
        warmupIterations: 2,
        maxDuration: .seconds(1),
        maxIterations: 1_000
    )
}

/// The parcel size the pipeline uses by default (`--parcel-size 4MiB`).
public let parcelByteCount = 4 << 20

/// About 4 MiB of seeded, English-like text, cut after the last whole line that fits.
public func sampleParcel(byteCount: Int = parcelByteCount, seed: UInt64 = 1) -> [UInt8] {
    var generator = CorpusGenerator(seed: seed)
    var bytes = generator.generate(byteCount: byteCount)
    if bytes.count > byteCount, let lastNewline = bytes[..<byteCount].lastIndex(of: UInt8(ascii: "\n")) {
        bytes.removeSubrange((lastNewline + 1)...)
    }
    return bytes
}

/// Runs `body` as the measured part of one iteration and records `byteCount / elapsed` as MB/s.
/// Work done before the call (resetting a table, say) stays outside the measurement. A benchmark
/// with a scaling factor loops over `benchmark.scaledIterations` inside `body` and passes the bytes
/// of all of them, so that operations shorter than the clock's resolution still read true.
public func measure(_ benchmark: Benchmark, bytes byteCount: Int, _ body: () throws -> Void) rethrows {
    benchmark.startMeasurement()
    let start = monotonicNanoseconds()
    try body()
    let elapsed = monotonicNanoseconds() - start
    benchmark.stopMeasurement()
    // bytes per nanosecond × 1000 = MB/s
    benchmark.measurement(megabytesPerSecond, Int((Double(byteCount) * 1_000 / Double(max(elapsed, 1))).rounded()))
}

private func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

#if canImport(Glibc)
    import Glibc
#endif

/// Monotonic seconds (CLOCK_MONOTONIC), for time-outs and rates.
func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

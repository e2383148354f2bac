#if canImport(Glibc)
    import Glibc
#endif

/// A one-line progress bar on standard error — bytes and parcels done, rate, ETA — drawn only
/// when standard error is a terminal.
public final class ProgressBar: @unchecked Sendable {
    // Used from one thread at a time (the thread that runs the step).
    private let enabled: Bool
    private var drawn = false

    public init() { enabled = isatty(STDERR_FILENO) == 1 }

    /// Whether standard error is a terminal (nothing is drawn otherwise).
    public var isEnabled: Bool { enabled }

    /// Redraws the bar.
    public func update(_ progress: StepProgress) {
        guard enabled else { return }
        let megabytes = Double(progress.bytesDone) / 1e6
        let rate = progress.seconds > 0 ? megabytes / progress.seconds : 0
        var line = "\r"
        if let total = progress.bytesTotal, total > 0 {
            let fraction = min(1, Double(progress.bytesDone) / Double(total))
            let width = 30
            let filled = Int(fraction * Double(width))
            line += "[" + String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled) + "] "
            line += "\(format1(megabytes))/\(format1(Double(total) / 1e6)) MB"
            let remaining = rate > 0 ? (Double(total) / 1e6 - megabytes) / rate : 0
            line +=
                "  \(progress.parcelsDone)/\(progress.parcelsCut) parcels  \(format1(rate)) MB/s  ETA \(format1(remaining)) s"
        } else {
            line +=
                "\(format1(megabytes)) MB  \(progress.parcelsDone)/\(progress.parcelsCut) parcels  \(format1(rate)) MB/s"
        }
        line += "\u{1B}[K"
        line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
        drawn = true
    }

    /// Clears the bar's line.
    public func finish() {
        guard enabled, drawn else { return }
        var clear = "\r\u{1B}[K"
        clear.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}

private func format1(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(abs(tenths % 10))"
}

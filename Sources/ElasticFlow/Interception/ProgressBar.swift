#if canImport(Glibc)
    import Glibc
#endif

/// A one-line progress bar on standard error — bytes done of total, a bar, rate, ETA, parcels —
/// drawn only when standard error is a terminal, and never wider than it: the terminal's width is
/// read on every redraw (so a resize is followed at the next one), and the parts that do not fit
/// are left out, least useful first. `finish` erases it; so do SIGINT and SIGTERM while it is on
/// screen (when nothing else handles them), before the signal ends the process.
public final class ProgressBar: @unchecked Sendable {
    // Used from one thread at a time (the thread that runs the step).
    private let enabled: Bool
    private var drawn = false

    public init() {
        enabled = isatty(STDERR_FILENO) == 1
        if enabled { Self.eraseOnSignals() }
    }

    /// Whether standard error is a terminal (nothing is drawn otherwise).
    public var isEnabled: Bool { enabled }

    /// Redraws the bar for a step's progress.
    public func update(_ progress: StepProgress) {
        update(
            done: progress.bytesDone, total: progress.bytesTotal, seconds: progress.seconds,
            parcels: (progress.parcelsDone, progress.parcelsCut))
    }

    /// Redraws the bar: `done` of `total` bytes (nil: unknown) after `seconds`, and parcels done
    /// of cut when given.
    public func update(done: UInt64, total: UInt64?, seconds: Double, parcels: (done: Int, cut: Int)? = nil) {
        guard enabled else { return }
        let line = Self.line(
            done: done, total: total, seconds: seconds, parcels: parcels, columns: Self.terminalColumns())
        var text = "\r" + line + "\u{1B}[K"
        text.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
        drawn = true
    }

    /// Clears the bar's line.
    public func finish() {
        guard enabled, drawn else { return }
        Self.clearLine()
        drawn = false
    }

    /// The bar's text for a terminal `columns` wide: at most `columns - 1` characters (the last
    /// column would wrap on some terminals), all ASCII.
    static func line(done: UInt64, total: UInt64?, seconds: Double, parcels: (done: Int, cut: Int)?, columns: Int)
        -> String
    {
        let width = columns - 1
        let megabytes = Double(done) / 1e6
        let rate = seconds > 0 ? megabytes / seconds : 0
        // The parts, most useful first; the bar itself takes what is left.
        var parts: [String] = []
        var fraction: Double?
        if let total, total > 0 {
            let f = min(1, Double(done) / Double(total))
            fraction = f
            parts.append("\(Int(f * 100))%")
            parts.append("\(format1(megabytes))/\(format1(Double(total) / 1e6)) MB")
        } else {
            parts.append("\(format1(megabytes)) MB")
        }
        parts.append("\(format1(rate)) MB/s")
        if let total, total > 0, rate > 0 {
            parts.append("ETA \(format1(max(0, Double(total) / 1e6 - megabytes) / rate)) s")
        }
        if let parcels { parts.append("\(parcels.done)/\(parcels.cut) parcels") }
        // Drop parts from the end until the rest fits (two spaces between parts).
        while !parts.isEmpty && parts.joined(separator: "  ").count > width { parts.removeLast() }
        var text = parts.joined(separator: "  ")
        // The bar, `[====    ] `, when there is room for at least 10 cells; at most 40.
        if let fraction {
            let cells = min(40, width - text.count - 3)
            if cells >= 10 {
                let filled = Int(fraction * Double(cells))
                text =
                    "[" + String(repeating: "=", count: filled) + String(repeating: " ", count: cells - filled) + "] "
                    + text
            }
        }
        return text
    }

    /// Standard error's terminal width (80 when it cannot be told).
    static func terminalColumns() -> Int {
        var size = winsize()
        guard ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }

    /// Clears the current line of standard error (async-signal-safe): for a program that ends
    /// on a signal of its own handling while a bar may be drawn.
    public static func clearLine() {
        let clear: StaticString = "\r\u{1B}[K"
        _ = write(STDERR_FILENO, clear.utf8Start, clear.utf8CodeUnitCount)
    }

    /// Installs, once, handlers for SIGINT and SIGTERM that erase the line and then end the
    /// process as the signal would have — only where the signal still has its default action (a
    /// program that handles signals, or blocks them for `sigwait`, keeps its own way).
    private static func eraseOnSignals() {
        for signal in [SIGINT, SIGTERM] {
            var current = sigaction()
            guard sigaction(signal, nil, &current) == 0, current.__sigaction_handler.sa_handler == nil else {
                continue
            }
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { caught in
                ProgressBar.clearLine()
                Glibc.signal(caught, SIG_DFL)
                raise(caught)
            }
            sigemptyset(&action.sa_mask)
            _ = sigaction(signal, &action, nil)
        }
    }
}

private func format1(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(abs(tenths % 10))"
}

internal import CElasticFlow
import Foundation
import Synchronization

/// Which way bytes cross a link: parcels from the master to a worker, results back.
public enum CompressionDirection: String, Sendable, Hashable, Codable {
    /// Parcels, master to worker.
    case parcels
    /// Results, worker to master.
    case results
}

/// One codec choice for one link and direction: what `--compression auto` picked, from which
/// parcel on, and what it measured then. Kept in the step summary and readable while a step runs
/// (`Master.compressionChoices`), for progress and metrics.
public struct CompressionChoice: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The worker at the other end of the link.
    public var node: String
    /// Parcels (master to worker) or results (worker to master).
    public var direction: CompressionDirection
    /// The codec chosen, in `Compression(parsing:)` syntax (`none`, `lz4:8`, `zstd:3`); a result's
    /// codec as the master saw it is only its name (`zstd`: the level is not on the wire).
    public var codec: String
    /// The first receipt's sequence number it applied to.
    public var fromSequence: UInt64
    /// The link's estimated throughput when it was chosen (wire bytes per second; nil: not
    /// measured yet, the model's assumption was used). Results chosen by a worker: nil.
    public var linkBytesPerSecond: Double?
    /// The model's estimate of the chosen codec's time per raw byte then, in nanoseconds (nil for
    /// a result's codec as the master saw it).
    public var nanosecondsPerByte: Double?
    /// Why: `model` (the estimated time per byte was lowest), `incompressible` (the step's bytes do
    /// not compress by the margin) or `observed` (a result's codec, as the master saw it arrive).
    public var reason: String

    /// `parcels -> NODE: CODEC from #SEQ (link N MB/s, REASON)`.
    public var description: String {
        let arrow = direction == .parcels ? "->" : "<-"
        let link = linkBytesPerSecond.map { "link \(format3($0 / 1e6)) MB/s, " } ?? ""
        let cost = nanosecondsPerByte.map { "\(format3($0)) ns/B, " } ?? ""
        return "\(direction.rawValue) \(arrow) \(node): \(codec) from #\(fromSequence) (\(link)\(cost)\(reason))"
    }
}

/// `--compression auto` for one step and one direction (docs/compression.md): per link, an estimate
/// of its throughput from the sender's own sends; for the step, each candidate codec's speed and
/// ratio measured on samples of the step's own parcels; per parcel, the codec with the lowest
/// estimated time per raw byte, `max(compress, wire)` (compression and the wire are pipelined),
/// changed only when another is better by `switchMargin`.
///
/// Pool threads call `choose` (outside the step lock); the loop thread calls `observe`. All state
/// is behind one `Mutex`; sampling (compressing a 64 KiB slice) happens outside it, one sample at
/// a time (`sampler`).
final class AutoCompression: Sendable {
    /// The candidates sampled besides `none`, fastest first.
    static let candidates: [Compression] = [
        .lz4Fast(acceleration: 8), .lz4, .zstd(level: 1), .zstd(level: 3),
        .zstd(level: 6),
    ]
    /// Bytes of a parcel each sample compresses (from its middle).
    static let sampleBytes = 64 << 10
    /// Parcels between two samples (the step's first parcel is always sampled).
    static let sampleEvery: UInt64 = 8
    /// Samples whose fastest timing is a codec's speed.
    static let speedSamples = 4
    /// A codec replaces the current one only when its estimate is this much lower.
    static let switchMargin = 0.05
    /// A parcel (or sample) whose compressed size is at or above this share of its size goes as
    /// `none`: the ratio is near 1, compressing only costs time.
    static let incompressibleShare = 0.97
    /// The link throughput assumed until one is measured (200 Mbit/s), in bytes per second: a
    /// compressing codec then, which costs a fast link far less than `none` costs a slow one.
    static let assumedLinkBytesPerSecond = 25e6
    /// Seconds of the kernel's rate estimates that make a link's estimate (a sliding window).
    static let linkWindowSeconds = 0.25
    /// Readings, and the seconds they span, a window needs before it replaces the assumption.
    static let minimumReadings = 8
    static let minimumReadingSeconds = 0.03
    /// Milliseconds between two looks at every link while a step sends (besides one per frame).
    static let lookMilliseconds: UInt64 = 2
    /// How many times its measured time compressing is charged: a compressed parcel also costs
    /// its decompression on the worker and copies that an uncompressed one does not (it leaves by
    /// reference or `sendfile`), on cores the task needs. 1.5 is what fits the benchmark's machine
    /// (2 cores shared by master and worker; 2 read lz4 as no cheaper than `none` at 1 Gbit/s;
    /// docs/compression.md), not a law.
    static let compressionCharge = 1.5
    /// Bytes of the probe each link is sent when a step starts on it: a HEARTBEAT padded to this
    /// size, sent before the STEP frame (so the worker, not yet busy with the step, echoes it at
    /// once; docs/protocol.md). Its bytes over its round trip are the link's first estimate, so
    /// the first parcels (a whole in-flight window) are not chosen from the assumption alone.
    static let probeBytes = 256 << 10
    /// A probe that reads faster than this may have passed whole inside a shaper's burst or the
    /// path's buffers (behind `tc tbf` at 1 Gbit/s, 256 KiB read 0.4–61 GB/s), or met a stall on
    /// an unshaped link (once in five, 64 MB/s where others read 0.4–3 GB/s): the link is probed
    /// again with `grownProbeBytes`, which such a burst cannot hold. A slower link (200 Mbit/s
    /// reads 33–47 MB/s) pays for one probe only.
    static let fastProbeBytesPerSecond = 60e6
    /// The second probe of a link whose first one read fast: 17 ms of a 1 Gbit/s link.
    static let grownProbeBytes = 2 << 20
    /// Longest a link's first parcel waits for its probe's echo, from the first probe's start
    /// (a slower link is left to the assumption until the echo or the kernel's readings come in).
    static let probeWaitSeconds = 0.1

    struct CodecStats {
        /// Seconds per raw byte: the fastest of the last `speedSamples` (a sample the scheduler
        /// preempted on a busy machine reads slow; none reads fast).
        var secondsPerByte: Double
        var recentSeconds: [Double] = []
        /// Compressed size / raw size (EWMA).
        var share: Double
    }

    struct LinkState {
        /// The kernel's delivery-rate estimates of the last `linkWindowSeconds`: when, bytes per
        /// second, and whether the sender limited it (then the link may be faster).
        var samples: [(time: Double, rate: Double, limited: Bool)] = []
        /// The last estimate made (kept while the window holds nothing newer).
        var estimate: Double?
        var connection: ConnectionID?
        var current: Compression?
        var currentReason = ""
        /// When the probe left (nil: none sent, or it was answered), its padding's size, when the
        /// echo of its 1-byte lead came back, and when the link's first probe left (the wait's start).
        var probeSentAt: Double?
        var probePadding = 0
        var probeLeadEcho: Double?
        var probeStartedAt: Double?
    }

    struct State {
        var stats: [CodecStats?] = Array(repeating: nil, count: AutoCompression.candidates.count)
        /// The last sample found the bytes incompressible with every candidate.
        var incompressible = false
        var lastSampled: UInt64?
        var links: [String: LinkState] = [:]
        var choices: [CompressionChoice] = []
        var incompressibleParcels = 0
    }

    let direction: CompressionDirection
    /// A link rate used in place of every measured one (tests of the model).
    private let linkRate: Double?
    private let state = Mutex(State())
    /// Held while a sample is taken (CPU only: compressing 64 KiB with a few codecs); no state.
    private let sampler = Mutex(())
    /// Wakes first parcels waiting for their link's probe (`awaitProbe`); holds no state.
    private let probeAnswers = NSCondition()

    init(direction: CompressionDirection, linkRate: Double? = nil) {
        self.direction = direction
        self.linkRate = linkRate
    }

    /// Every choice made so far, in order (the summary's list).
    var choices: [CompressionChoice] { state.withLock { $0.choices } }
    /// Parcels sent as `none` because they did not compress by the margin.
    var incompressibleParcels: Int { state.withLock { $0.incompressibleParcels } }

    /// The link's estimate now (wire bytes per second; nil: nothing measured yet).
    func estimate(for node: String) -> Double? { state.withLock { $0.links[node]?.estimate } }

    /// The current choice per link, one entry each.
    var current: [CompressionChoice] {
        state.withLock { state in
            var last: [String: CompressionChoice] = [:]
            for choice in state.choices { last[choice.node] = choice }
            return last.values.sorted { $0.node < $1.node }
        }
    }

    /// The link's throughput in wire bytes per second, or nil before anything was measured: the
    /// lower quartile of the window's rates the sender did not limit (the link's own), or, when
    /// there are none, the median of those it limited (lower bounds: a link that outruns its
    /// sender only ever shows those).
    static func throughput(_ link: LinkState) -> Double? {
        func median(_ values: [Double]) -> Double? {
            guard !values.isEmpty else { return nil }
            let sorted = values.sorted()
            return sorted[sorted.count / 2]
        }
        // The link's own readings run high while a shaper's burst or slow start lasts, never
        // low: their lower quartile settles on the rate soonest.
        func lowerQuartile(_ values: [Double]) -> Double? {
            guard !values.isEmpty else { return nil }
            return values.sorted()[values.count / 4]
        }
        // The first readings of a connection (slow start, a shaper's burst) say little: the
        // assumption stands until the window holds enough of them over long enough.
        guard link.samples.count >= minimumReadings,
            let first = link.samples.first, let last = link.samples.last,
            last.time - first.time >= minimumReadingSeconds
        else { return link.estimate }
        let own = lowerQuartile(link.samples.filter { !$0.limited }.map(\.rate))
        let bound = median(link.samples.filter(\.limited).map(\.rate))
        // A bound counts only when the link showed no rate of its own: the first readings of a
        // connection are sender-limited and high (a 100 Mbit/s link's read 248 MB/s).
        return own ?? bound ?? link.estimate
    }

    /// Estimated seconds per raw byte with `stats` (nil: `none`) over a link of `rate`.
    static func cost(_ stats: CodecStats?, rate: Double) -> Double {
        guard let stats else { return 1 / rate }
        return max(stats.secondsPerByte * compressionCharge, stats.share / rate)
    }

    /// The codec for the next frame of `sequence` to `node`, and the new choice when it changed.
    /// Samples `bytes` (compressing a slice with every candidate) when a sample is due.
    func choose(for node: String, sequence: UInt64, bytes: UnsafeRawBufferPointer, codec: Codec)
        -> (Compression, CompressionChoice?)
    {
        let due = { [self] in
            state.withLock { state -> Double? in
                let rate = linkRate ?? state.links[node].flatMap(Self.throughput) ?? Self.assumedLinkBytesPerSecond
                guard let last = state.lastSampled else { return rate }
                return sequence >= last &+ Self.sampleEvery || sequence < last ? rate : nil
            }
        }
        if bytes.count > 0, due() != nil {
            // One sampler at a time: a step's first parcels wait for its first sample (their own,
            // taken side by side, would time each codec against the others on shared cores).
            sampler.withLock { _ in
                if let rate = due() { sample(bytes, sequence: sequence, codec: codec, rate: rate) }
            }
        }
        return state.withLock { state in
            var link = state.links[node] ?? LinkState()
            defer { state.links[node] = link }
            let rate = linkRate ?? Self.throughput(link)
            var best: Compression = .none
            var reason = "model"
            var chosenCost: Double?
            if state.incompressible {
                reason = "incompressible"
            } else {
                let linkRate = rate ?? Self.assumedLinkBytesPerSecond
                var bestCost = Self.cost(nil, rate: linkRate)
                for (index, stats) in state.stats.enumerated() {
                    guard let stats else { continue }
                    let cost = Self.cost(stats, rate: linkRate)
                    if cost < bestCost {
                        bestCost = cost
                        best = Self.candidates[index]
                    }
                }
                chosenCost = bestCost
                if let current = link.current, current != best, link.currentReason != "incompressible" {
                    let index = Self.candidates.firstIndex(of: current)
                    let currentCost = Self.cost(index.flatMap { state.stats[$0] }, rate: linkRate)
                    if bestCost > currentCost * (1 - Self.switchMargin) {
                        best = current
                        chosenCost = currentCost
                    }
                }
            }
            if best == link.current && reason == link.currentReason { return (best, nil) }
            link.current = best
            link.currentReason = reason
            let choice = CompressionChoice(
                node: node, direction: direction, codec: best.description, fromSequence: sequence,
                linkBytesPerSecond: rate, nanosecondsPerByte: chosenCost.map { $0 * 1e9 }, reason: reason)
            state.choices.append(choice)
            return (best, choice)
        }
    }

    /// Loop thread: a probe (a 1-byte lead, then `padding` bytes) left for `node` on `connection`.
    func probeSent(
        to node: String, connection: ConnectionID, padding: Int = AutoCompression.probeBytes,
        at now: Double = monotonicSeconds()
    ) {
        state.withLock { state in
            var link = state.links[node] ?? LinkState()
            link.connection = connection
            if link.probeSentAt == nil { link.probeStartedAt = now }
            link.probeSentAt = now
            link.probePadding = padding
            link.probeLeadEcho = nil
            state.links[node] = link
        }
    }

    /// Loop thread: `node` echoed a probe of `padding` bytes. Until the kernel's readings make an
    /// estimate, the probe's bytes over the time since its lead's echo are the link's (a lower
    /// bound: it holds the echo, and on a fresh connection slow start; a shaper's burst makes it
    /// higher).
    /// - Parameters:
    ///   - largest: the biggest probe the link may be sent (the step's parcel size: the worker
    ///     takes frames of that size).
    ///   - now: the time of the echo (tests pass their own).
    /// - Returns: the padding of a second, bigger probe the caller sends at once (the first one
    ///   read faster than `fastProbeBytesPerSecond`), or nil.
    func probeAnswered(by node: String, padding: UInt64, largest: Int, at now: Double = monotonicSeconds()) -> Int? {
        let (answered, grow) = state.withLock { (state: inout State) -> (Bool, Int?) in
            guard var link = state.links[node], let sent = link.probeSentAt else { return (false, nil) }
            defer { state.links[node] = link }
            guard padding == UInt64(link.probePadding) else {
                if padding == 1 { link.probeLeadEcho = now }
                return (false, nil)
            }
            let rate = Double(link.probePadding) / max(now - (link.probeLeadEcho ?? sent), 1e-6)
            if link.samples.count < Self.minimumReadings { link.estimate = rate }
            if link.probePadding < Self.grownProbeBytes && Self.grownProbeBytes <= largest
                && rate > Self.fastProbeBytesPerSecond
            {
                // Parcels keep waiting (`probeSentAt` stays set) until the second probe is answered.
                return (false, Self.grownProbeBytes)
            }
            link.probeSentAt = nil
            return (true, nil)
        }
        if answered {
            probeAnswers.lock()
            probeAnswers.broadcast()
            probeAnswers.unlock()
        }
        return grow
    }

    /// The link's estimate from elsewhere, until the kernel's readings make one: on a worker, the
    /// master's probe as it arrived (its bytes over the time since its lead arrived).
    func seed(node: String, bytesPerSecond: Double) {
        state.withLock { state in
            var link = state.links[node] ?? LinkState()
            if link.samples.count < Self.minimumReadings { link.estimate = bytesPerSecond }
            state.links[node] = link
        }
    }

    /// Pool thread, before a parcel's codec is chosen: waits (at most `probeWaitSeconds` from
    /// the first probe's start) while the probe to `node` is unanswered.
    func awaitProbe(for node: String) {
        guard let sent = state.withLock({ $0.links[node].flatMap { $0.probeSentAt == nil ? nil : $0.probeStartedAt } })
        else { return }
        let deadline = Date(timeIntervalSinceNow: sent + Self.probeWaitSeconds - monotonicSeconds())
        probeAnswers.lock()
        defer { probeAnswers.unlock() }
        while state.withLock({ $0.links[node]?.probeSentAt != nil }) {
            if !probeAnswers.wait(until: deadline) { return }
        }
    }

    /// Compresses a slice of `bytes` with the candidates, fastest first, and folds speed and
    /// ratio into the stats. It stops at the first candidate whose charged compression time alone
    /// is no lower than the best estimate so far over a link of `rate`: the slower ones cannot win
    /// there (on a fast link, only `lz4:8` is sampled; their stats wait for a slower link).
    private func sample(_ bytes: UnsafeRawBufferPointer, sequence: UInt64, codec: Codec, rate: Double) {
        let length = min(bytes.count, Self.sampleBytes)
        let start = (bytes.count - length) / 2
        let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)])
        let output = ParcelBuffer(capacity: length + (length >> 3) + 1024)
        var measured: [CodecStats?] = []
        // A codec's first sample of a step runs it once unmeasured: its first call allocates its
        // context and takes its pages, which a step's later parcels never pay.
        let known = state.withLock { $0.stats.map { $0 != nil } }
        var bestCost = Self.cost(nil, rate: rate)
        func timed(_ candidate: Compression) -> (seconds: Double, written: Int)? {
            let began = monotonicSeconds()
            guard let written = try? codec.compress(slice, into: output, with: candidate) else { return nil }
            return (monotonicSeconds() - began, written)
        }
        for (index, candidate) in Self.candidates.enumerated() {
            if !known[index] { _ = try? codec.compress(slice, into: output, with: candidate) }
            guard let first = timed(candidate) else {
                measured.append(nil)
                continue
            }
            var seconds = first.seconds
            let stops = { (seconds: Double) in seconds / Double(length) * Self.compressionCharge >= bestCost }
            // A timing the scheduler preempted would stop the sampling wrongly: the faster of two.
            if stops(seconds), let again = timed(candidate), again.seconds < seconds { seconds = again.seconds }
            let stats = CodecStats(
                secondsPerByte: seconds / Double(length),
                share: Double(first.written - Int(EF_CODEC_HEADER_SIZE)) / Double(length))
            measured.append(stats)
            if stops(seconds) { break }
            bestCost = min(bestCost, Self.cost(stats, rate: rate))
        }
        state.withLock { state in
            state.lastSampled = sequence
            // A candidate not sampled this time keeps its last share (unknown: no say).
            state.incompressible = Self.candidates.indices.allSatisfy { index in
                let share = index < measured.count ? measured[index]?.share : state.stats[index]?.share
                return (share ?? 1) >= Self.incompressibleShare
            }
            for (index, sample) in measured.enumerated() {
                guard let sample else { continue }
                var recent = (state.stats[index]?.recentSeconds ?? []) + [sample.secondsPerByte]
                if recent.count > Self.speedSamples { recent.removeFirst(recent.count - Self.speedSamples) }
                let share = state.stats[index].map { $0.share * 0.5 + sample.share * 0.5 } ?? sample.share
                state.stats[index] = CodecStats(secondsPerByte: recent.min()!, recentSeconds: recent, share: share)
            }
        }
    }

    /// A parcel that did not compress by the margin went as `none` (counted for the summary).
    func sentUncompressed() { state.withLock { $0.incompressibleParcels += 1 } }

    /// Loop thread: a look at the link to `node` on `connection` (at a send, or from the
    /// sampling timer): the kernel's delivery rate (`EventLoop.deliveryRate`) joins the window.
    func observe(node: String, connection: ConnectionID, rate: (bytesPerSecond: UInt64, appLimited: Bool)?) {
        let now = monotonicSeconds()
        state.withLock { state in
            var link = state.links[node] ?? LinkState()
            defer { state.links[node] = link }
            link.connection = connection
            guard let rate, rate.bytesPerSecond > 0 else { return }
            // The kernel's figure changes with each new rate sample (an ACK); a repeat of the last
            // one is no new reading, and counting it would weigh an idle link's last figure.
            if let previous = link.samples.last, previous.rate == Double(rate.bytesPerSecond),
                previous.limited == rate.appLimited
            {
                return
            }
            link.samples.append((now, Double(rate.bytesPerSecond), rate.appLimited))
            link.samples.removeAll { $0.time < now - Self.linkWindowSeconds }
            link.estimate = Self.throughput(link)
        }
    }

    /// The connections of the links looked at so far (for the sampling timer).
    var connections: [(node: String, connection: ConnectionID)] {
        state.withLock { state in state.links.compactMap { key, link in link.connection.map { (key, $0) } } }
    }

    /// The master's record of the codecs results arrived with: a change per node becomes a choice.
    /// - Returns: the new choice when `codecID`'s codec differs from the last one seen from `node`.
    func observed(codecID: UInt8, from node: String, sequence: UInt64) -> CompressionChoice? {
        let name = ef_codec_name(Int32(codecID)).map { String(cString: $0) } ?? "codec \(codecID)"
        return state.withLock { state in
            var link = state.links[node] ?? LinkState()
            defer { state.links[node] = link }
            guard link.currentReason != name else { return nil }
            link.currentReason = name
            let choice = CompressionChoice(
                node: node, direction: direction, codec: name, fromSequence: sequence, linkBytesPerSecond: nil,
                nanosecondsPerByte: nil, reason: "observed")
            state.choices.append(choice)
            return choice
        }
    }
}

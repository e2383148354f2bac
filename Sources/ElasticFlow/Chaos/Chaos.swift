/// Reproducible fault injection (the original's chaos_spirits, made deterministic): at `percent`
/// percent of the chances, a node injects one of the fault kinds. Every decision is a pure
/// function of the seed, the receipt, its attempt and the place of the chance, so the same seed
/// gives the same fault to the same parcel attempt on every run, whichever node decides. (Which
/// attempts happen can still vary: a dropped connection also takes down the other parcels in
/// flight on it at that moment, and those get new attempts.)
///
/// Faults never fire on a receipt's last allowed attempt, so a chaotic step still completes: what
/// chaos tests is that every injected fault is detected and recovered, not the retry limit.
public struct ChaosSettings: Hashable, Sendable, Codable {
    /// 0...45.
    public var percent: Int
    /// Seeds every fault decision: the same seed gives the same faults to the same parcel attempts.
    public var seed: UInt64

    /// The highest `percent` accepted (45): above it too few attempts would get through for a step to
    /// finish in reasonable time.
    public static let maximumPercent = 45

    /// - Throws: `ElasticFlowError.invalidArgument` for a percentage outside 0...45.
    public init(percent: Int, seed: UInt64) throws(ElasticFlowError) {
        guard (0...Self.maximumPercent).contains(percent) else {
            throw .invalidArgument("chaos (--chaos, chaos) must be in 0...\(Self.maximumPercent), not \(percent)")
        }
        self.percent = percent
        self.seed = seed
    }

    enum CodingKeys: String, CodingKey { case percent, seed }

    /// Decodes through the range check: a STEP (or a journal) asking for chaos 100 is refused.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            percent: try container.decode(Int.self, forKey: .percent),
            seed: try container.decode(UInt64.self, forKey: .seed))
    }

    /// Whether any fault can fire (`percent` above 0).
    public var isActive: Bool { percent > 0 }
}

/// The kinds of fault chaos injects.
public enum FaultKind: String, CaseIterable, Sendable, Codable {
    /// The task throws on the worker (an ERROR frame; the parcel is retried).
    case taskRaises = "task-raises"
    /// The connection is dropped (the node's open parcels go to other nodes; the master reconnects).
    case connectionDrop = "connection-drop"
    /// A frame is held back for a while before it is sent.
    case frameDelay = "frame-delay"
    /// A result is sent twice (the second is dropped: exactly-once aggregation).
    case duplicateResult = "duplicate-result"
    /// A byte of a frame's payload is flipped in flight (the frame checksum catches it; the
    /// connection is dropped and the parcels go elsewhere).
    case byteFlip = "byte-flip"
}

/// Where a chance to inject a fault is taken.
enum ChaosSite: UInt64 {
    case masterSendsParcel = 1
    case workerProcesses = 2
}

extension ChaosSettings {
    /// The fault to inject at this chance, if any.
    func fault(at site: ChaosSite, step: UInt32, sequence: UInt64, attempt: Int, maxAttempts: Int) -> FaultKind? {
        // Attempts travel in four bits (they saturate at 15), so chaos stops there too.
        guard isActive, attempt < min(maxAttempts, 15) else { return nil }
        var state = seed ^ (site.rawValue &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(step) << 48)
        state ^= sequence &* 0xBF58_476D_1CE4_E5B9
        state ^= UInt64(attempt) &* 0x94D0_49BB_1331_11EB
        let roll = Self.mix(&state)
        guard roll % 100 < UInt64(percent) else { return nil }
        let kinds: [FaultKind]
        switch site {
        case .masterSendsParcel: kinds = [.frameDelay, .byteFlip, .connectionDrop]
        case .workerProcesses: kinds = FaultKind.allCases
        }
        return kinds[Int(Self.mix(&state) % UInt64(kinds.count))]
    }

    /// A deterministic delay for a delayed frame, 5...100 ms.
    func delayMilliseconds(step: UInt32, sequence: UInt64, attempt: Int) -> UInt64 {
        var state = seed ^ sequence ^ (UInt64(attempt) << 32) ^ (UInt64(step) << 48) ^ 0xD1B5_4A32_D192_ED03
        return 5 + Self.mix(&state) % 96
    }

    /// splitmix64.
    static func mix(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Chaos injected and recovered in a step, by kind.
public struct ChaosReport: Hashable, Sendable, CustomStringConvertible {
    /// Faults injected in the step, by kind.
    public var injected: [FaultKind: Int] = [:]
    /// Injected faults the step detected and recovered from, by kind (equal to `injected` when every
    /// one was handled).
    public var recovered: [FaultKind: Int] = [:]

    /// An empty report: nothing injected, nothing recovered.
    public init() {}

    /// `KIND injected/recovered` for every fault kind, comma-separated, in `FaultKind.allCases` order.
    public var description: String {
        FaultKind.allCases.map { kind in
            "\(kind.rawValue) \(injected[kind, default: 0])/\(recovered[kind, default: 0])"
        }.joined(separator: ", ")
    }
}

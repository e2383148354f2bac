import ArgumentParser
import ElasticFlow

/// The shared secret, from a flag, a file or the environment (worker and master alike).
struct CookieOptions: ParsableArguments {
    @Option(name: .long, help: "The shared cookie (prefer --cookie-file or ELASTICFLOW_COOKIE: argv is visible to ps).")
    var cookie: String?

    @Option(name: .long, help: ArgumentHelp("A file holding the shared cookie.", valueName: "PATH"))
    var cookieFile: String?

    /// `--cookie`, else `--cookie-file` (or the cluster file's), else `$ELASTICFLOW_COOKIE`. With
    /// `required` false (a master with no worker, configured or joining), a missing cookie is fine.
    func resolve(fileFallback: String? = nil, required: Bool = true) throws(ElasticFlowError) -> Cookie {
        do {
            return try Cookie.resolve(secret: cookie, file: cookieFile ?? fileFallback)
        } catch {
            guard !required else { throw error }
            return try Cookie("unused: no worker")
        }
    }
}

/// What to print of a word count.
struct OutputOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Print only the N most frequent words.", valueName: "N"))
    var top: Int?

    @Option(name: .long, help: "Output format: text ('word count'), tsv ('word<TAB>count') or json.")
    var format: WordCountFormat = .text

    func validate() throws {
        if let top, top < 1 { throw ValidationError("--top must be at least 1") }
    }
}

/// Flags shared by the commands that run a step on a cluster.
struct ClusterOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Workers to distribute to (runs on this node alone when omitted).", valueName: "HOST:PORT,..."))
    var workers: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Start once N of the listed workers are ready (the others are tried again and join as they come; "
                + "default: all of them, and one unreachable fails the step).", valueName: "N"))
    var minWorkers: Int?

    @OptionGroup
    var cookieOptions: CookieOptions
    var cookie: String? { cookieOptions.cookie }
    var cookieFile: String? { cookieOptions.cookieFile }

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Parcel compression: none, lz4, lz4:ACCELERATION, zstd or zstd:LEVEL (default lz4).", valueName: "CODEC"))
    var compression: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Parcels a worker may hold unanswered (default 4; 16 from files uncompressed; 8 with --shared-input).",
            valueName: "N"))
    var inFlight: Int?

    @Flag(inversion: .prefixedNo, help: "Whether the master processes parcels too (default: yes).")
    var masterWork: Bool?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Listen here for workers that join while the step runs (worker --join).", valueName: "HOST:PORT"))
    var listen: String?

    @Option(
        name: .long,
        help: ArgumentHelp("Seconds of silence before a worker is presumed dead (default 5).", valueName: "SECONDS"))
    var heartbeatTimeout: Double?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Seconds a parcel may stay unanswered on a live worker before it is sent again elsewhere (default 120).",
            valueName: "SECONDS"))
    var parcelTimeout: Double?

    @Option(
        name: .long,
        help: ArgumentHelp("Task failures a parcel may have before the step fails (default 4).", valueName: "N"))
    var maxAttempts: Int?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Failures (task errors, refused results, overdue parcels) after which a worker is excluded from the step "
                + "(default 3; 0: never).", valueName: "N"))
    var excludeAfter: Int?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Seconds a master no node can serve yet waits for a worker to join before it fails (default 60).",
            valueName: "SECONDS"))
    var joinTimeout: Double?

    @Flag(
        inversion: .prefixedNo,
        help: "Whether straggling parcels get a speculative copy on an idle node (default: yes).")
    var speculation: Bool?

    @Option(
        name: .long,
        help: ArgumentHelp("Inject faults at this rate, 0-45 (reproducible with --chaos-seed).", valueName: "PERCENT"))
    var chaos: Int?

    @Option(name: .long, help: ArgumentHelp("Seed of the injected faults (default 1).", valueName: "N"))
    var chaosSeed: UInt64?

    @Flag(
        name: .long,
        help: ArgumentHelp(
            "Every node reads the files itself at the same path (shared filesystem or identical copies): the master "
                + "splits them by size and sends only receipts (default parcel size then 32MiB, in-flight 8)."))
    var sharedInput = false

    @Option(
        name: .long,
        help: ArgumentHelp("Results a worker may combine into one answer (1: none; default 16).", valueName: "N"))
    var combine: Int?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Seconds a worker may hold a finished result to combine it with others (default 1).",
            valueName: "SECONDS"))
    var combineDelay: Double?

    @Flag(
        name: .long,
        help:
            "Encrypt every frame after the handshake (AES-256-GCM); by default frames are authenticated, not encrypted."
    )
    var encrypt = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The longest word accepted, e.g. 1MiB (default); a longer one is an error naming the file.",
            valueName: "SIZE"))
    var maxWordSize: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "auto (default): read gzip, zstd, lz4 and bzip2 files, told by their first bytes, as the text they hold; "
                + "none: count the bytes as they are.",
            valueName: "MODE"))
    var decompress: String?

    /// `--decompress`, checked, or nil when not given.
    func decompression() throws(ElasticFlowError) -> Decompression? {
        try decompress.map { (text) throws(ElasticFlowError) in try Decompression(parsing: text) }
    }

    /// `--max-word-size`, checked, or nil when not given.
    func wordSizeCap() throws(ElasticFlowError) -> Int? {
        try maxWordSize.map { (text) throws(ElasticFlowError) in
            try Limits.size(text, in: Limits.maxWordSize, "--max-word-size")
        }
    }

    /// Checks every flag's range at parse time, before a command reads a file, a journal or the
    /// network: the flags over a default configuration, through `ClusterConfiguration.validate()`
    /// (the one place the ranges are checked; the command applies them again over its real one).
    func validate() throws {
        do throws(ElasticFlowError) {
            var probe = ClusterConfiguration(workers: try workerAddresses() ?? [], cookie: try Cookie("probe"))
            var flags = self
            if workers == nil, let minWorkers {
                // The workers come from a cluster file (or a journal): only the range can be
                // checked now; the command checks the count against them.
                try Limits.check(minWorkers, in: Limits.minWorkers, "--min-workers")
                flags.minWorkers = nil
            }
            try flags.apply(to: &probe, parcelSize: nil)
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// Whether any cluster-only flag was given.
    var anyGiven: Bool {
        workers != nil || minWorkers != nil || cookie != nil || cookieFile != nil || compression != nil
            || inFlight != nil
            || masterWork != nil || listen != nil || heartbeatTimeout != nil || maxAttempts != nil || chaos != nil
            || parcelTimeout != nil || chaosSeed != nil || sharedInput || combine != nil || combineDelay != nil
            || excludeAfter != nil || joinTimeout != nil || speculation != nil
            || encrypt
    }

    /// The workers' addresses, or nil when none were given (`--workers ''` with `--listen`:
    /// only workers that join).
    func workerAddresses() throws(ElasticFlowError) -> [NodeAddress]? {
        guard let workers else { return listen != nil ? [] : nil }
        if workers.isEmpty && listen != nil { return [] }
        var addresses: [NodeAddress] = []
        for part in workers.split(separator: ",", omittingEmptySubsequences: false) {
            addresses.append(try NodeAddress(parsing: String(part)))
        }
        guard !addresses.isEmpty else { throw .invalidArgument("--workers is empty") }
        var seen = Set<NodeAddress>()
        for address in addresses where !seen.insert(address).inserted {
            throw .invalidArgument("worker \(address) is listed twice in --workers")
        }
        return addresses
    }

    /// Applies the flags over a configuration (flags win over a cluster file).
    func apply(to configuration: inout ClusterConfiguration, parcelSize: String?) throws(ElasticFlowError) {
        if let compression { configuration.compression = try Compression(parsing: compression) }
        if let minWorkers { configuration.minWorkers = minWorkers }
        if let inFlight { configuration.inFlight = inFlight }
        if let masterWork { configuration.masterProcesses = masterWork }
        if let parcelSize {
            configuration.parcelSize = try Limits.size(parcelSize, in: Limits.parcelSize, "--parcel-size")
        }
        if let cap = try wordSizeCap() { configuration.maxWordSize = cap }
        if let mode = try decompression() { configuration.decompression = mode }
        if sharedInput {
            // Splits cost the master a frame and a merge each, whatever their size: larger ones
            // by default (unless a size was given here or in the cluster file).
            if parcelSize == nil && configuration.parcelSize == ClusterConfiguration.copyParcelSize {
                configuration.parcelSize = ClusterConfiguration.sharedInputParcelSize
            }
            configuration.sharedInput = true
        }
        if let combine { configuration.combine.maxReceipts = combine }
        if let combineDelay {
            configuration.combine.maxDelay = try Limits.duration(
                seconds: combineDelay, in: Limits.combineDelay, ClusterConfiguration.Setting.combineDelay)
        }
        if encrypt { configuration.encrypt = true }
        if let listen { configuration.listen = try NodeAddress(parsing: listen) }
        if let heartbeatTimeout {
            let timeout = try Limits.duration(
                seconds: heartbeatTimeout, in: Limits.timeout, ClusterConfiguration.Setting.heartbeatTimeout)
            configuration.heartbeatTimeout = timeout
            configuration.heartbeatInterval = min(configuration.heartbeatInterval, timeout / 3)
        }
        if let parcelTimeout {
            configuration.parcelTimeout = try Limits.duration(
                seconds: parcelTimeout, in: Limits.parcelTimeout, ClusterConfiguration.Setting.parcelTimeout)
        }
        if let maxAttempts { configuration.maxAttempts = maxAttempts }
        if let excludeAfter {
            guard excludeAfter >= 0 else { throw .invalidArgument("--exclude-after must be 0...1000 (0: never)") }
            configuration.excludeAfter = excludeAfter == 0 ? nil : excludeAfter
        }
        if let joinTimeout {
            configuration.joinTimeout = try Limits.duration(
                seconds: joinTimeout, in: Limits.joinTimeout, ClusterConfiguration.Setting.joinTimeout)
        }
        if let speculation { configuration.speculation = speculation ? SpeculationSettings() : nil }
        if let chaos {
            configuration.chaos = try ChaosSettings(percent: chaos, seed: chaosSeed ?? configuration.chaos?.seed ?? 1)
        } else if let chaosSeed, let current = configuration.chaos {
            configuration.chaos = try ChaosSettings(percent: current.percent, seed: chaosSeed)
        }
        try configuration.validate()
    }
}

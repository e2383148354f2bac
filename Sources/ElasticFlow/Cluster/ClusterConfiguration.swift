import Foundation

/// A node's network address, `HOST:PORT` (IPv6 as `[::1]:PORT`).
public struct NodeAddress: Hashable, Sendable, CustomStringConvertible {
    /// The host name or IP address (IPv6 without brackets).
    public var host: String
    /// The TCP port, 0...65535; 0 means "any free port" where the address is listened on.
    public var port: UInt16

    /// An address from its parts; nothing is resolved or checked here.
    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// - Throws: `ElasticFlowError.invalidArgument` for anything but `HOST:PORT` with a port in 0...65535.
    public init(parsing text: String) throws(ElasticFlowError) {
        let trimmed = String(text.trimmingWhitespace())
        var host: Substring
        var portText: Substring
        if trimmed.hasPrefix("["), let close = trimmed.firstIndex(of: "]") {
            host = trimmed[trimmed.index(after: trimmed.startIndex)..<close]
            let rest = trimmed[trimmed.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .invalidArgument("invalid address '\(text)': expected HOST:PORT") }
            portText = rest.dropFirst()
        } else {
            guard let colon = trimmed.lastIndex(of: ":") else {
                throw .invalidArgument("invalid address '\(text)': expected HOST:PORT")
            }
            host = trimmed[..<colon]
            portText = trimmed[trimmed.index(after: colon)...]
        }
        guard !host.isEmpty, let port = UInt16(portText) else {
            throw .invalidArgument("invalid address '\(text)': expected HOST:PORT with a port in 0...65535")
        }
        self.init(host: String(host), port: port)
    }

    /// `HOST:PORT`, or `[HOST]:PORT` when the host is an IPv6 address.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// The shared secret nodes prove they know (HMAC-SHA256 challenge-response; it never crosses the
/// wire).
public struct Cookie: Sendable, Hashable {
    let bytes: [UInt8]

    /// The secret, to hand to child processes (in their environment, never their arguments).
    public var secret: String { String(decoding: bytes, as: UTF8.self) }

    /// - Throws: `ElasticFlowError.invalidArgument` for an empty cookie.
    public init(_ secret: String) throws(ElasticFlowError) {
        guard !secret.isEmpty else { throw .invalidArgument("the cookie is empty") }
        bytes = Array(secret.utf8)
    }

    /// Reads a cookie file; one trailing newline is ignored.
    public init(contentsOfFile path: String) throws(ElasticFlowError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, operation: "read cookie file", errno: errno == 0 ? ENOENT : errno)
        }
        var text = String(decoding: data, as: UTF8.self)
        if text.hasSuffix("\r\n") { text.removeLast(1) }
        if text.hasSuffix("\n") { text.removeLast() }
        guard !text.isEmpty else { throw .invalidArgument("the cookie file '\(path)' is empty") }
        bytes = Array(text.utf8)
    }

    /// `--cookie`, else `--cookie-file`, else `$ELASTICFLOW_COOKIE`.
    public static func resolve(secret: String?, file: String?) throws(ElasticFlowError) -> Cookie {
        if let secret { return try Cookie(secret) }
        if let file { return try Cookie(contentsOfFile: file) }
        if let value = ProcessInfo.processInfo.environment["ELASTICFLOW_COOKIE"], !value.isEmpty {
            return try Cookie(value)
        }
        throw .invalidArgument("a cookie is required: --cookie SECRET, --cookie-file PATH or ELASTICFLOW_COOKIE")
    }
}

/// How a master runs a step over its cluster.
public struct ClusterConfiguration: Sendable {
    /// The workers to connect to.
    public var workers: [NodeAddress]
    /// How many of `workers` must be ready before parcels go out; the others are tried again
    /// (backing off up to 1 s) and join the step as they come. Until that many are ready within
    /// `connectTimeout`, unreachable ones are tried again; then the step fails naming them. A
    /// listed worker that refuses this master, or that it refuses (cookie, version, codec), is
    /// left out while enough are left. nil: every listed worker, and one that cannot be reached or
    /// is refused fails the step at once.
    public var minWorkers: Int?
    /// The secret the master proves to every worker, and they to it.
    public var cookie: Cookie
    /// How parcels and results are compressed on the wire.
    public var compression: Compression = .lz4
    /// Target parcel size in bytes (parcels end at line boundaries).
    public var parcelSize: Int = ClusterConfiguration.copyParcelSize
    /// Parcels a worker may hold at once (unanswered).
    /// nil: the mode's default — 8 in shared-input mode, 16 in copy mode when parcels are sent
    /// from files (regular files, compression none, no chaos: a parcel in flight then costs the
    /// master no buffer), 4 otherwise (each parcel in flight holds its buffer on the master).
    /// More in flight also lets workers combine more results per answer.
    public var inFlight: Int?
    /// Whether the master processes parcels too, on its own threads.
    public var masterProcesses = true
    /// Threads of the master (compression and its own parcels).
    public var masterThreads = WordCountOptions.onlineCores
    /// Interval between heartbeats, both ways (`Limits.heartbeatInterval`).
    public var heartbeatInterval: Duration = .seconds(1)
    /// Silence after which a peer is presumed dead (`Limits.timeout`).
    public var heartbeatTimeout: Duration = .seconds(5)
    /// How long connecting and the handshake may take (`Limits.timeout`).
    public var connectTimeout: Duration = .seconds(10)
    /// The largest parcel or result accepted, decompressed or not.
    public var maxPayload: Int = 256 << 20
    /// The longest word accepted: a longer one fails the step, naming the file (the master's
    /// cutter and every worker's counter enforce it, so memory for a word stays bounded).
    public var maxWordSize = Limits.defaultMaxWordSize
    /// Whether the master reads gzip, zstd, lz4 and bzip2 sources as the text they hold (`auto`;
    /// copy mode only: shared-input mode refuses a compressed source, since it splits by bytes).
    public var decompression = Decompression.auto
    /// Where the master listens for workers that join while a step runs (`worker --join`);
    /// nil: no joining.
    public var listen: NodeAddress?
    /// Task failures (ERROR answers) a parcel may have before the step fails (Spark's
    /// task.maxFailures). A parcel lost with its node does not count: it is simply sent again.
    public var maxAttempts = 4
    /// Reproducible fault injection.
    public var chaos: ChaosSettings?
    /// A parcel unanswered this long on a live worker is sent again elsewhere (the first result
    /// wins; the other is dropped). nil: wait for as long as the worker lives (`Limits.parcelTimeout`).
    public var parcelTimeout: Duration? = .seconds(120)
    /// Shared-input mode: every node reads the sources at the same path (a shared filesystem, or
    /// identical copies). The master splits each file by size without reading it and sends only
    /// receipts; each worker reads its own byte range (docs/architecture.md, "Shared input").
    public var sharedInput = false
    /// Worker-side combining: a worker merges several parcels' results into one RESULT.
    public var combine = CombineSettings()
    /// Encrypt every frame after the handshake (AES-256-GCM), not only authenticate it (the
    /// default: every frame carries a tag under keys derived per connection from the cookie and
    /// both nonces). A worker started with `--encrypt` refuses a master that does not encrypt.
    public var encrypt = false
    /// Joining connections that have not completed the handshake yet, at most; more are closed
    /// as they are accepted (bounded memory before authentication).
    public var maxUnauthenticated = 64
    /// A worker that fails this many times in a step (task errors, refused results, overdue
    /// parcels; not injected faults) is excluded from the step (Spark's excludeOnFailure).
    /// nil: never.
    public var excludeAfter: Int? = 3
    /// How long a master that no node can serve yet (`--workers '' --listen … --no-master-work`)
    /// waits for a worker to join before the step fails (`Limits.joinTimeout`).
    public var joinTimeout: Duration = .seconds(60)
    /// Speculative copies of stragglers: nil turns them off.
    public var speculation: SpeculationSettings? = SpeculationSettings()

    /// The parcel size of shared-input mode when none is given: a parcel costs the master one
    /// small frame and one merge whatever its size, so larger splits cost it less per GB
    /// (docs/benchmarks.md has the measurement).
    public static let sharedInputParcelSize = 32 << 20
    /// The default parcel size of copy mode.
    public static let copyParcelSize = 4 << 20
    /// The in-flight limit of shared-input mode when none is given: a parcel in flight costs the
    /// master a receipt, not a buffer, and a deeper queue lets a worker combine more results.
    public static let sharedInputInFlight = 8
    /// The in-flight limit of copy mode when parcels leave from files (`sendfile`).
    public static let fileCopyInFlight = 16
    /// The in-flight limit of copy mode when each parcel in flight holds a buffer.
    public static let copyInFlight = 4

    /// A configuration with every other setting at its default (lz4, 4 MiB parcels, the master
    /// processing parcels too).
    /// - Parameters:
    ///   - workers: the workers to connect to; an empty list with `listen` set waits for workers to join.
    ///   - cookie: the cluster's shared secret.
    public init(workers: [NodeAddress], cookie: Cookie) {
        self.workers = workers
        self.cookie = cookie
    }

    /// The names range errors give the time settings, the same whether the value came from the
    /// Swift API, a flag or the cluster file (flags and the file give seconds).
    public enum Setting {
        /// `heartbeatInterval`.
        public static let heartbeatInterval = "the heartbeat interval (heartbeatInterval)"
        /// `heartbeatTimeout`, `--heartbeat-timeout`.
        public static let heartbeatTimeout = "the heartbeat timeout (--heartbeat-timeout, heartbeatTimeout)"
        /// `parcelTimeout`, `--parcel-timeout`.
        public static let parcelTimeout = "the parcel timeout (--parcel-timeout, parcelTimeout)"
        /// `joinTimeout`, `--join-timeout`.
        public static let joinTimeout = "the join time-out (--join-timeout, joinTimeout)"
        /// `combine.maxDelay`, `--combine-delay`.
        public static let combineDelay = "the combining delay (--combine-delay, combineDelay)"
    }

    /// Checks every limit and time-out at once: the one place these rules live. A step validates
    /// its configuration before anything starts, and so do the cluster file and the CLI flags (so
    /// a bad value is reported before any worker is contacted).
    /// - Throws: `ElasticFlowError.invalidArgument` naming the first value out of range.
    public func validate() throws(ElasticFlowError) {
        for worker in workers where worker.port == 0 {
            throw .invalidArgument("worker address '\(worker)': port 0 names no worker (give the port it listens on)")
        }
        if let minWorkers {
            let name = "the minimum of ready workers (--min-workers, minWorkers)"
            try Limits.check(minWorkers, in: Limits.minWorkers, name)
            guard minWorkers <= workers.count else {
                throw .invalidArgument(
                    "\(name) is \(minWorkers), but only \(workers.count) worker(s) are listed (--workers, nodes)")
            }
        }
        if let inFlight {
            try Limits.check(inFlight, in: Limits.inFlight, "the in-flight limit (--in-flight, inFlight)")
        }
        try Limits.check(maxAttempts, in: Limits.maxAttempts, "the attempt limit (--max-attempts, maxAttempts)")
        try Limits.check(bytes: parcelSize, in: Limits.parcelSize, "the parcel size (--parcel-size, parcelSize)")
        try Limits.check(bytes: maxWordSize, in: Limits.maxWordSize, "the word-size cap (--max-word-size, maxWordSize)")
        try Limits.check(bytes: maxPayload, in: Limits.maxPayload, "the payload limit (maxPayload)")
        try Limits.check(
            masterThreads, in: Limits.threads, "the master's threads (--threads, masterThreads)")
        try Limits.checkParcelMemory(threads: masterThreads, parcelSize: parcelSize)
        try Limits.check(
            combine.maxReceipts, in: 1...CombineSettings.receiptLimit, "combining (--combine, combine)")
        try Limits.check(combine.maxDelay, in: Limits.combineDelay, Self.Setting.combineDelay)
        try Limits.check(heartbeatTimeout, in: Limits.timeout, Self.Setting.heartbeatTimeout)
        try Limits.check(heartbeatInterval, in: Limits.heartbeatInterval, Self.Setting.heartbeatInterval)
        try Limits.check(connectTimeout, in: Limits.timeout, "the connect timeout (connectTimeout)")
        if let parcelTimeout { try Limits.check(parcelTimeout, in: Limits.parcelTimeout, Self.Setting.parcelTimeout) }
        if let chaos {
            try Limits.check(chaos.percent, in: 0...ChaosSettings.maximumPercent, "chaos (--chaos, chaos)")
        }
        if let excludeAfter {
            try Limits.check(
                excludeAfter, in: Limits.excludeAfter,
                "the exclusion threshold (--exclude-after, excludeAfter; 0: never)")
        }
        try Limits.check(joinTimeout, in: Limits.joinTimeout, Self.Setting.joinTimeout)
        if let speculation { try speculation.validate() }
    }
}

/// The cluster file read by `elasticflow run --config` (JSON; documented in docs/cluster-file.md).
public struct ClusterFile: Codable, Sendable {
    /// One entry of `nodes`.
    public struct Node: Codable, Sendable {
        /// For people and error messages; the master names each worker by its address.
        public var name: String
        /// `HOST:PORT` (IPv6 as `[::1]:PORT`), checked by `load(_:)`.
        public var address: String
        /// `"master"` or `"worker"`; anything else is refused by `load(_:)`.
        public var role: String
    }

    /// The cluster: the workers the master connects to, in this order, and at most one master (whose
    /// address, if its port is not 0, is where workers may join).
    public var nodes: [Node]
    /// A file holding the cookie (one trailing newline ignored); relative to the cluster file's folder.
    public var cookieFile: String?
    /// `none`, `lz4`, `lz4:N` or `zstd[:N]`; `ClusterConfiguration.compression`.
    public var compression: String?
    /// A size such as `"4MiB"` (a string, 1 byte to 128 MiB); `ClusterConfiguration.parcelSize`.
    public var parcelSize: String?
    /// Parcels a worker may hold unanswered, 1...1024; `ClusterConfiguration.inFlight`.
    public var inFlight: Int?
    /// Whether the master processes parcels too; `ClusterConfiguration.masterProcesses`.
    public var masterProcesses: Bool?
    /// Seconds between the master's heartbeats; `ClusterConfiguration.heartbeatInterval`.
    public var heartbeatInterval: Double?
    /// Seconds of silence before a worker is presumed dead; `ClusterConfiguration.heartbeatTimeout`.
    public var heartbeatTimeout: Double?
    /// Task failures a parcel may have, 1...100; `ClusterConfiguration.maxAttempts`.
    public var maxAttempts: Int?
    /// Seconds a parcel may stay unanswered on a live worker; `ClusterConfiguration.parcelTimeout`.
    public var parcelTimeout: Double?
    /// Fault injection, a percentage 0...45 (`ChaosSettings`); absent: off.
    public var chaos: Int?
    /// The seed of the injected faults (1 when absent); used only with `chaos`.
    public var chaosSeed: UInt64?
    /// Shared-input mode; `ClusterConfiguration.sharedInput` (parcels then default to 32 MiB).
    public var sharedInput: Bool?
    /// Results a worker may combine into one answer, 1...4096; `CombineSettings.maxReceipts`.
    public var combine: Int?
    /// Seconds a worker may hold a finished result to combine it, 0...60; `CombineSettings.maxDelay`.
    public var combineDelay: Double?
    /// Encrypt frames, not only authenticate them; `ClusterConfiguration.encrypt`.
    public var encrypt: Bool?
    /// The longest word accepted, a size string (1 byte to 64 MiB); `ClusterConfiguration.maxWordSize`.
    public var maxWordSize: String?
    /// `"auto"` or `"none"`; `ClusterConfiguration.decompression`.
    public var decompress: String?
    /// Failures before a worker is excluded, 0...1000 (0: never); `ClusterConfiguration.excludeAfter`.
    public var excludeAfter: Int?
    /// Seconds to wait for a worker to join; `ClusterConfiguration.joinTimeout`.
    public var joinTimeout: Double?
    /// Whether stragglers get speculative copies (default settings); `ClusterConfiguration.speculation`.
    public var speculation: Bool?
    /// Workers that must be ready before parcels go out, 1 to the number listed; absent: all of them.
    /// `ClusterConfiguration.minWorkers`.
    public var minWorkers: Int?
    /// Where the master serves its status page, `/api/status` and `/metrics` (`HOST:PORT`, as
    /// `--status`; the flag wins); absent: no status server.
    public var status: String?

    /// Reads and validates a cluster file; relative cookie paths are relative to the file.
    /// - Throws: `ElasticFlowError.invalidArgument` for a file that is not JSON, a key it does not
    ///   know (naming the nearest known one), a value of the wrong type or out of range.
    public static func load(_ path: String) throws(ElasticFlowError) -> ClusterFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, operation: "read cluster file", errno: errno == 0 ? ENOENT : errno)
        }
        try checkKeys(data, path: path)
        let file: ClusterFile
        do {
            file = try JSONDecoder().decode(ClusterFile.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw .invalidArgument("cluster file '\(path)': missing key '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .invalidArgument(
                "cluster file '\(path)': wrong type at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
            )
        } catch {
            throw .invalidArgument("cluster file '\(path)' is not valid JSON")
        }
        for node in file.nodes {
            guard node.role == "master" || node.role == "worker" else {
                throw .invalidArgument(
                    "cluster file '\(path)': node '\(node.name)' has role '\(node.role)', expected master or worker")
            }
            _ = try NodeAddress(parsing: node.address)
        }
        guard file.nodes.filter({ $0.role == "master" }).count <= 1 else {
            throw .invalidArgument("cluster file '\(path)': more than one master")
        }
        var resolved = file
        if let cookieFile = file.cookieFile, !cookieFile.hasPrefix("/") {
            resolved.cookieFile =
                URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(cookieFile).path
        }
        return resolved
    }

    /// The configuration a master builds from this file (flags may override it afterwards).
    /// - Parameters:
    ///   - cookie: the shared secret (from the file's `cookieFile`, a flag or the environment).
    ///   - replacement: the workers to use instead of the file's nodes (`--workers`): given here,
    ///     not set afterwards, so the file's other values (`minWorkers`) are checked against the
    ///     workers the step will really have.
    public func configuration(cookie: Cookie, workers replacement: [NodeAddress]? = nil) throws(ElasticFlowError)
        -> ClusterConfiguration
    {
        var workers: [NodeAddress] = []
        for node in nodes where node.role == "worker" {
            let address = try NodeAddress(parsing: node.address)
            guard !workers.contains(address) else {
                throw .invalidArgument("the cluster file lists worker \(address) twice")
            }
            workers.append(address)
        }
        var configuration = ClusterConfiguration(workers: replacement ?? workers, cookie: cookie)
        if let compression { configuration.compression = try Compression(parsing: compression) }
        if let parcelSize {
            configuration.parcelSize = try Limits.size(
                parcelSize, in: Limits.parcelSize, "the parcel size (parcelSize)")
        }
        if let maxWordSize {
            configuration.maxWordSize = try Limits.size(
                maxWordSize, in: Limits.maxWordSize, "the word-size cap (maxWordSize)")
        }
        if let decompress { configuration.decompression = try Decompression(parsing: decompress, "decompress") }
        if let inFlight { configuration.inFlight = inFlight }
        if let masterProcesses { configuration.masterProcesses = masterProcesses }
        if let heartbeatInterval {
            configuration.heartbeatInterval = try Limits.duration(
                seconds: heartbeatInterval, in: Limits.heartbeatInterval, ClusterConfiguration.Setting.heartbeatInterval
            )
        }
        if let heartbeatTimeout {
            configuration.heartbeatTimeout = try Limits.duration(
                seconds: heartbeatTimeout, in: Limits.timeout, ClusterConfiguration.Setting.heartbeatTimeout)
        }
        if let maxAttempts { configuration.maxAttempts = maxAttempts }
        if let parcelTimeout {
            configuration.parcelTimeout = try Limits.duration(
                seconds: parcelTimeout, in: Limits.parcelTimeout, ClusterConfiguration.Setting.parcelTimeout)
        }
        if let sharedInput {
            configuration.sharedInput = sharedInput
            if sharedInput && parcelSize == nil {
                configuration.parcelSize = ClusterConfiguration.sharedInputParcelSize
            }
        }
        if let combine { configuration.combine.maxReceipts = combine }
        if let combineDelay {
            configuration.combine.maxDelay = try Limits.duration(
                seconds: combineDelay, in: Limits.combineDelay, ClusterConfiguration.Setting.combineDelay)
        }
        if let encrypt { configuration.encrypt = encrypt }
        if let chaos { configuration.chaos = try ChaosSettings(percent: chaos, seed: chaosSeed ?? 1) }
        if let excludeAfter { configuration.excludeAfter = excludeAfter == 0 ? nil : excludeAfter }
        if let joinTimeout {
            configuration.joinTimeout = try Limits.duration(
                seconds: joinTimeout, in: Limits.joinTimeout, ClusterConfiguration.Setting.joinTimeout)
        }
        if let speculation { configuration.speculation = speculation ? SpeculationSettings() : nil }
        if let minWorkers { configuration.minWorkers = minWorkers }
        if let chaos {
            configuration.chaos = try ChaosSettings(percent: chaos, seed: chaosSeed ?? 1)
        }
        if let master = nodes.first(where: { $0.role == "master" }) {
            let address = try NodeAddress(parsing: master.address)
            if address.port != 0 { configuration.listen = address }
        }
        try configuration.validate()
        return configuration
    }
}

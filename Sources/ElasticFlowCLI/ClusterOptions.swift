import ArgumentParser
import ElasticFlow

/// Flags shared by the commands that run a step on a cluster.
struct ClusterOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp("Workers to distribute to (runs on this node alone when omitted).", valueName: "HOST:PORT,..."))
    var workers: String?

    @Option(name: .long, help: "The shared cookie (prefer --cookie-file or ELASTICFLOW_COOKIE: argv is visible to ps).")
    var cookie: String?

    @Option(name: .long, help: ArgumentHelp("A file holding the shared cookie.", valueName: "PATH"))
    var cookieFile: String?

    @Option(name: .long, help: ArgumentHelp("Parcel compression: none, lz4, zstd or zstd:LEVEL (default lz4).", valueName: "CODEC"))
    var compression: String?

    @Option(name: .long, help: ArgumentHelp("Parcels a worker may hold unanswered (default 4).", valueName: "N"))
    var inFlight: Int?

    @Flag(inversion: .prefixedNo, help: "Whether the master processes parcels too (default: yes).")
    var masterWork: Bool?

    /// The workers' addresses, or nil when none were given.
    func workerAddresses() throws(ElasticFlowError) -> [NodeAddress]? {
        guard let workers else { return nil }
        var addresses: [NodeAddress] = []
        for part in workers.split(separator: ",", omittingEmptySubsequences: false) {
            addresses.append(try NodeAddress(parsing: String(part)))
        }
        guard !addresses.isEmpty else { throw .invalidArgument("--workers is empty") }
        return addresses
    }

    /// Applies the flags over a configuration (flags win over a cluster file).
    func apply(to configuration: inout ClusterConfiguration, parcelSize: String?) throws(ElasticFlowError) {
        if let compression { configuration.compression = try Compression(parsing: compression) }
        if let inFlight {
            guard inFlight >= 1 else { throw .invalidArgument("--in-flight must be at least 1") }
            configuration.inFlight = inFlight
        }
        if let masterWork { configuration.masterProcesses = masterWork }
        if let parcelSize { configuration.parcelSize = try ByteSize.parse(parcelSize) }
    }
}

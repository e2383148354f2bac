import ArgumentParser
import ElasticFlow
import ElasticFlowStatus
import Foundation

/// `--status HOST:PORT` and `--status-linger SECONDS` on `count`, `run` and `resume`: the master's
/// status server (the live page, `/api/status`, `/metrics`), an unauthenticated read-only view.
struct StatusOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Serve a live status page, /api/status (JSON) and /metrics (Prometheus) here: unauthenticated and "
                + "read-only, so keep it on loopback (the default host) unless the network is trusted.",
            valueName: "HOST:PORT"))
    var status: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Keep serving the final state this many seconds after the work ends (default 0).", valueName: "SECONDS"))
    var statusLinger: Double?

    /// Starts the status server (before any work, so a port in use fails at once) on `--status`,
    /// else on the cluster file's `status` key; nil when neither is given.
    func start(fileAddress: String? = nil) throws(ElasticFlowError) -> StatusSession? {
        let linger = statusLinger ?? 0
        try Limits.check(seconds: linger, in: Limits.statusLinger, "--status-linger")
        guard let text = status ?? fileAddress else {
            if statusLinger != nil { throw .invalidArgument("--status-linger needs --status") }
            return nil
        }
        let address = try StatusOptions.address(text, flag: status != nil ? "--status" : "cluster-file key \"status\"")
        return try StatusSession(address: address, role: "master", name: "master", linger: linger, page: true)
    }

    /// `HOST:PORT`, or `:PORT` / `PORT` for loopback.
    static func address(_ text: String, flag: String) throws(ElasticFlowError) -> NodeAddress {
        var text = text
        if text.allSatisfy(\.isNumber) { text = ":" + text }
        if text.hasPrefix(":") { text = "127.0.0.1" + text }
        do {
            return try NodeAddress(parsing: text)
        } catch {
            throw .invalidArgument("invalid \(flag) '\(text)': expected HOST:PORT")
        }
    }
}

/// `worker --metrics HOST:PORT` (the worker's own counters as `/metrics` and `/api/status`) and
/// `--name` (the name it gives masters, shown on their status pages).
struct WorkerStatusOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Serve this worker's /metrics (Prometheus) and /api/status here: unauthenticated and read-only.",
            valueName: "HOST:PORT"))
    var metrics: String?

    @Option(
        name: .long,
        help: ArgumentHelp("The name this worker gives masters (default worker@ADDRESS).", valueName: "NAME"))
    var name: String?

    /// Starts the worker's metrics server when `--metrics` is given (before the worker serves).
    func start(name: String) throws(ElasticFlowError) -> StatusSession? {
        guard let metrics else { return nil }
        let address = try StatusOptions.address(metrics, flag: "--metrics")
        return try StatusSession(address: address, role: "worker", name: name, linger: 0, page: false)
    }
}

extension StatusSession? {
    /// The single-node count, shown on the board when there is one.
    func localRun(
        _ sources: [DataSource], options: WordCountOptions, progress: (@Sendable (StepProgress) -> Void)?
    ) throws(ElasticFlowError) -> (WordCounter, WordCountStatistics) {
        guard let board = self?.board else {
            return try LocalWordCount.run(sources, options: options, progress: progress)
        }
        return try LocalWordCount.run(sources, options: options, reportingTo: board, progress: progress)
    }
}

/// A status board and the server that shows it, for one command.
final class StatusSession: Sendable {
    let board: StatusBoard
    let server: StatusServer
    let linger: Double

    init(address: NodeAddress, role: String, name: String, linger: Double, page: Bool) throws(ElasticFlowError) {
        let metrics = StatusMetrics()
        board = StatusBoard(role: role, name: name, observer: metrics)
        server = try StatusServer(
            address: address, routes: StatusRoutes(board: board, metrics: metrics, servesPage: page))
        self.linger = linger
        // On standard error, so a caller that asked for port 0 learns the port.
        LogOptions.cli.notice("status on http://\(server.address)/")
    }

    /// Shows `master`'s steps on the board.
    func attach(_ master: Master) { master.report(to: board) }

    /// Keeps serving for `--status-linger` seconds, then stops the server.
    func finish() {
        if linger > 0 { Thread.sleep(forTimeInterval: linger) }
        server.shutdown()
    }
}

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A small LAN of network namespaces (`ip netns`, needs root) where the master and each worker
/// are separate hosts with their own network stack, so a test can cut one host's link.
///
/// Topology: a master namespace `ef-<pid>-<tag>-m` and one namespace per worker
/// `ef-<pid>-<tag>-w<i>`. Worker i is joined to the master by its own veth pair, created inside
/// the namespaces (the root namespace never sees it): `w<i>` in the master namespace with
/// 10.213.i.1/30, `eth0` in the worker's with 10.213.i.2/30. Nothing routes anywhere else.
/// `tearDown()` (also run on deinit) stops every process started here and deletes the namespaces.
final class NetworkNamespaces {
    struct Host {
        /// The namespace's name (for `ip netns exec`).
        let namespace: String
        /// The host's IPv4 address on its link to the master.
        let address: String
        /// Its end of the link, inside its namespace.
        let device: String
    }

    let master: String
    let workers: [Host]
    private var created: [String] = []
    private var children: [ChildProcess] = []
    private var tornDown = false

    // MARK: availability

    /// The `ip` executable, if iproute2 is installed.
    static let ip: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":").map(String.init) ?? []
        return (path + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]).map { $0 + "/ip" }.first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }()

    /// Why namespaces cannot be made here, or nil when they can (found by making and deleting a
    /// throwaway namespace with a veth pair, once per test process).
    static let unavailableReason: String? = {
        guard geteuid() == 0 else {
            return "network namespaces need root (running as uid \(geteuid())): run the tests as root, as CI does"
        }
        guard ip != nil else {
            return "iproute2's `ip` is not installed (apt-get install -y iproute2)"
        }
        let probe = "ef-\(getpid())-probe"
        defer { _ = try? run(["netns", "del", probe]) }
        let steps: [[String]] = [
            ["netns", "add", probe],
            ["-n", probe, "link", "set", "lo", "up"],
            ["-n", probe, "link", "add", "name", "efa", "type", "veth", "peer", "name", "efb"],
        ]
        for step in steps {
            do {
                let result = try run(step)
                if result.status != 0 {
                    return "cannot make network namespaces here: `ip \(step.joined(separator: " "))` failed: "
                        + result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                }
            } catch {
                return "cannot run `ip`: \(error)"
            }
        }
        // `ip netns exec` also needs to mount a fresh /sys.
        if let result = try? run(["netns", "exec", probe, ip!, "link", "show", "lo"]), result.status != 0 {
            return "cannot run a process in a network namespace: "
                + result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return nil
    }()

    static var available: Bool { unavailableReason == nil }

    // MARK: setting up and tearing down

    /// Makes the master's namespace and `workers` workers' namespaces, each linked to the master's.
    init(workers count: Int) throws {
        if let reason = Self.unavailableReason { throw NetworkNamespaceError.unavailable(reason) }
        precondition((1...200).contains(count))
        Self.removeStaleNamespaces()
        let base = "ef-\(getpid())-\(String(format: "%04x", UInt16.random(in: 0...UInt16.max)))"
        master = base + "-m"
        workers = (1...count).map { Host(namespace: "\(base)-w\($0)", address: "10.213.\($0).2", device: "eth0") }
        do {
            try Self.ip(["netns", "add", master])
            created.append(master)
            try Self.ip(["-n", master, "link", "set", "lo", "up"])
            for (index, worker) in workers.enumerated() {
                let subnet = "10.213.\(index + 1)"
                let masterEnd = "w\(index + 1)"
                try Self.ip(["netns", "add", worker.namespace])
                created.append(worker.namespace)
                try Self.ip(["-n", worker.namespace, "link", "set", "lo", "up"])
                // Made inside the master's namespace, its peer moved straight into the worker's.
                try Self.ip([
                    "-n", master, "link", "add", "name", masterEnd, "type", "veth",
                    "peer", "name", worker.device, "netns", worker.namespace,
                ])
                try Self.ip(["-n", master, "addr", "add", "\(subnet).1/30", "dev", masterEnd])
                try Self.ip(["-n", worker.namespace, "addr", "add", "\(worker.address)/30", "dev", worker.device])
                try Self.ip(["-n", master, "link", "set", masterEnd, "up"])
                try Self.ip(["-n", worker.namespace, "link", "set", worker.device, "up"])
            }
        } catch {
            _ = tearDown()
            throw error
        }
    }

    /// Stops every process started here (SIGTERM, then SIGKILL after `grace` seconds) and deletes
    /// the namespaces. Returns the namespaces still listed by `ip netns list` (empty when clean).
    @discardableResult
    func tearDown(grace: Double = 2.0) -> [String] {
        if !tornDown {
            tornDown = true
            for child in children { child.stop(grace: grace) }
            for namespace in created.reversed() {
                // Anything still inside (there should be nothing) would keep it alive unnamed.
                if let pids = try? Self.run(["netns", "pids", namespace]) {
                    for pid in pids.stdoutText.split(separator: "\n").compactMap({ pid_t($0) }) { kill(pid, SIGKILL) }
                }
                _ = try? Self.run(["netns", "del", namespace])
            }
        }
        let names = Set(created)
        return Self.listNamespaces().filter { names.contains($0) }
    }

    deinit { tearDown() }

    // MARK: acting on the LAN

    /// Starts `arguments` in a namespace (`ip netns exec` execs it: the process is the program
    /// itself, so signals reach it). Stopped by `tearDown()`.
    func start(in namespace: String, _ executable: String, _ arguments: [String], environment: [String: String] = [:])
        throws -> ChildProcess
    {
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let child = try ChildProcess(Self.ip!, ["netns", "exec", namespace, executable] + arguments, environment: env)
        children.append(child)
        return child
    }

    /// Takes a host's link down from inside its namespace: from then on nothing it sends or is
    /// sent crosses (no RST, no FIN: to its peers it simply goes silent).
    func cut(_ host: Host) throws {
        try Self.ip(["-n", host.namespace, "link", "set", host.device, "down"])
    }

    /// Shapes a host's link both ways with `tc tbf` at `rate` (`"20mbit"`): on the master's end
    /// (what it sends) and on the host's (what it answers). `change` retunes a shaping already in
    /// place (`tc qdisc change`), mid-step.
    func shape(_ host: Host, rate: String, change: Bool = false) throws {
        guard let index = workers.firstIndex(where: { $0.namespace == host.namespace }) else { return }
        for (namespace, device) in [(master, "w\(index + 1)"), (host.namespace, host.device)] {
            try Self.ip([
                "netns", "exec", namespace, "tc", "qdisc", change ? "change" : "add", "dev", device, "root", "tbf",
                "rate", rate, "burst", "256kb", "latency", "50ms",
            ])
        }
    }

    // MARK: running ip

    static func run(_ arguments: [String]) throws -> CommandResult {
        guard let ip else { throw NetworkNamespaceError.unavailable("`ip` is not installed") }
        let child = try ChildProcess(ip, arguments)
        child.waitForExit()
        return CommandResult(status: child.status, stdout: child.stdout, stderr: child.stderrText)
    }

    /// Runs `ip arguments`, throwing with its message when it fails.
    static func ip(_ arguments: [String]) throws {
        let result = try run(arguments)
        guard result.status == 0 else {
            throw NetworkNamespaceError.command(
                "ip \(arguments.joined(separator: " "))", result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// The names `ip netns list` shows (each line is `NAME` or `NAME (id: N)`).
    static func listNamespaces() -> [String] {
        guard let result = try? run(["netns", "list"]), result.status == 0 else { return [] }
        return result.stdoutText.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
    }

    /// Deletes the namespaces a test process that is gone left behind (killed before tearing
    /// down): only names of this exact form, `ef-<pid>-<4 hex>-m|w<n>`, whose pid no longer runs.
    private static func removeStaleNamespaces() {
        for name in listNamespaces() {
            let parts = name.split(separator: "-")
            let host = parts.count == 4 ? parts[3] : ""
            let isHost = host == "m" || (host.hasPrefix("w") && Int(host.dropFirst()) != nil)
            guard isHost, parts[0] == "ef", let pid = pid_t(parts[1]), parts[2].count == 4,
                UInt16(parts[2], radix: 16) != nil, pid != getpid(), kill(pid, 0) != 0, errno == ESRCH
            else { continue }
            if let pids = try? run(["netns", "pids", name]) {
                for orphan in pids.stdoutText.split(separator: "\n").compactMap({ pid_t($0) }) { kill(orphan, SIGKILL) }
            }
            _ = try? run(["netns", "del", name])
        }
    }
}

enum NetworkNamespaceError: Error, CustomStringConvertible {
    case unavailable(String)
    case command(String, String)
    case timedOut(String)

    var description: String {
        switch self {
        case .unavailable(let why): return "network namespaces are unavailable: \(why)"
        case .command(let command, let message): return "`\(command)` failed: \(message)"
        case .timedOut(let what): return "timed out: \(what)"
        }
    }
}

/// Seconds on the monotonic clock.
func monotonicNow() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// A child process whose standard output and error are drained as they come, line by line, each
/// line stamped with the (monotonic) time it arrived, so a test can wait for a line and time it.
final class ChildProcess: @unchecked Sendable {
    struct Line {
        let arrival: Double
        let text: String
    }

    let process = Process()
    let started: Double
    // Guarded by condition.
    private let condition = NSCondition()
    private var outputBytes: [UInt8] = []
    private var outputLines: [Line] = []
    private var errorLines: [Line] = []
    private var openStreams = 2
    private var exitedAt: Double?

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        started = monotonicNow()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardInput = FileHandle.nullDevice
        let output = privatePipe()
        let errors = privatePipe()
        process.standardOutput = output
        process.standardError = errors
        process.terminationHandler = { [weak self] _ in
            guard let self else { return }
            condition.lock()
            exitedAt = monotonicNow()
            condition.broadcast()
            condition.unlock()
        }
        try process.run()
        drain(output.fileHandleForReading, isOutput: true)
        drain(errors.fileHandleForReading, isOutput: false)
    }

    private func drain(_ handle: FileHandle, isOutput: Bool) {
        let thread = Thread { [self] in
            var pending: [UInt8] = []
            while true {
                let data = handle.availableData
                let arrival = monotonicNow()
                condition.lock()
                if data.isEmpty {
                    if !pending.isEmpty {
                        append(Line(arrival: arrival, text: String(decoding: pending, as: UTF8.self)), isOutput)
                    }
                    openStreams -= 1
                    condition.broadcast()
                    condition.unlock()
                    return
                }
                if isOutput { outputBytes += data }
                pending += data
                while let newline = pending.firstIndex(of: 0x0A) {
                    append(Line(arrival: arrival, text: String(decoding: pending[..<newline], as: UTF8.self)), isOutput)
                    pending.removeSubrange(...newline)
                }
                condition.broadcast()
                condition.unlock()
            }
        }
        thread.start()
    }

    // Under condition.
    private func append(_ line: Line, _ isOutput: Bool) {
        if isOutput { outputLines.append(line) } else { errorLines.append(line) }
    }

    var stdout: [UInt8] { condition.withLock { outputBytes } }
    var stdoutLines: [Line] { condition.withLock { outputLines } }
    var stderrLines: [Line] { condition.withLock { errorLines } }
    var stderrText: String { stderrLines.map(\.text).joined(separator: "\n") }
    var status: Int32 { process.terminationStatus }
    var isRunning: Bool { condition.withLock { exitedAt == nil } }
    /// When it exited (monotonic seconds), once it has.
    var exitTime: Double? { condition.withLock { exitedAt } }

    /// Waits until `predicate` holds for (standard output lines, standard error lines), or the
    /// process has exited and its streams are closed, or `timeout` seconds have passed. Returns
    /// whether the predicate held.
    @discardableResult
    func wait(timeout: Double, until predicate: (_ stdout: [Line], _ stderr: [Line]) -> Bool) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while true {
            if predicate(outputLines, errorLines) { return true }
            if (exitedAt != nil && openStreams == 0) || Date() >= deadline { return false }
            _ = condition.wait(until: min(deadline, Date(timeIntervalSinceNow: 0.05)))
        }
    }

    /// Waits for the exit and the end of both streams; false if `timeout` passed first.
    @discardableResult
    func waitForExit(timeout: Double = .infinity) -> Bool {
        let deadline = timeout.isFinite ? Date(timeIntervalSinceNow: timeout) : Date.distantFuture
        condition.lock()
        while exitedAt == nil || openStreams > 0 {
            if Date() >= deadline {
                condition.unlock()
                return false
            }
            _ = condition.wait(until: min(deadline, Date(timeIntervalSinceNow: 0.05)))
        }
        condition.unlock()
        process.waitUntilExit()
        return true
    }

    /// SIGTERM, then SIGKILL if it is still running after `grace` seconds.
    func stop(grace: Double) {
        guard isRunning else {
            waitForExit()
            return
        }
        kill(process.processIdentifier, SIGTERM)
        if !waitForExit(timeout: grace) {
            kill(process.processIdentifier, SIGKILL)
            waitForExit()
        }
    }
}

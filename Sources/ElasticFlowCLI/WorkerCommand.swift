import ArgumentParser
import ElasticFlow
import Foundation
import Logging

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Serve masters: run the tasks they send parcels for, until SIGTERM or SIGINT.",
        discussion: """
            Prints 'listening on HOST:PORT' once it accepts connections. Masters must prove they \
            know the same cookie (HMAC-SHA256 challenge-response; the cookie never crosses the \
            wire). SIGTERM or SIGINT stops it gracefully: parcels in progress are finished and \
            answered, then every master gets BYE.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Address to listen on (port 0: any free port).", valueName: "HOST:PORT"))
    var listen: String?

    @Option(
        name: .long,
        help: ArgumentHelp("A master to join (connect to; reconnects while running).", valueName: "HOST:PORT"))
    var join: String?

    @OptionGroup
    var cookie: CookieOptions

    @Option(name: .long, help: ArgumentHelp("Threads that run tasks (default: one per core).", valueName: "N"))
    var threads: Int?

    @Option(
        name: .long,
        help: ArgumentHelp("Seconds of silence before a master is presumed gone (default 5).", valueName: "SECONDS"))
    var heartbeatTimeout: Double?

    @Flag(name: .long, help: "Refuse masters that do not encrypt their frames (run/count --encrypt).")
    var encrypt = false

    @Flag(name: .long, help: "Log nothing but errors (--log-level error).")
    var quiet = false

    @OptionGroup
    var statusServer: WorkerStatusOptions

    @OptionGroup(title: "Logging")
    var log: LogOptions

    func run() throws {
        // Signals are taken by a thread of our own (sigwait), so every thread must block them
        // before any is created.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        log.bootstrap(level: quiet ? max(log.logLevel, .error) : nil)
        do throws(ElasticFlowError) {
            guard listen != nil || join != nil else {
                throw .invalidArgument("give --listen HOST:PORT, --join HOST:PORT or both")
            }
            let address = try listen.map { (text) throws(ElasticFlowError) in try NodeAddress(parsing: text) }
            let master = try join.map { (text) throws(ElasticFlowError) in try NodeAddress(parsing: text) }
            let secret = try cookie.resolve()
            var configuration = WorkerConfiguration(
                listen: address ?? NodeAddress(host: "127.0.0.1", port: 0), cookie: secret,
                name: statusServer.name ?? address.map { "worker@\($0)" } ?? "worker@joining-\(master!)")
            configuration.listens = address != nil
            configuration.join = master
            configuration.encrypt = encrypt
            if let threads { configuration.threads = threads }
            if let heartbeatTimeout {
                configuration.heartbeatTimeout = try Limits.duration(
                    seconds: heartbeatTimeout, in: Limits.timeout, WorkerConfiguration.heartbeatTimeoutName)
            }
            try configuration.validate()
            let status = try statusServer.start(name: configuration.name)
            var logger = Logger(label: "elasticflow.worker")
            let worker = try Worker(configuration: configuration, logger: logger)
            worker.statusBoard = status?.board
            try worker.start()
            logger[metadataKey: "node"] = "\(worker.name)"
            let signalLogger = logger
            if address != nil { writeLine("listening on \(worker.address)", to: STDOUT_FILENO) }
            // On standard output too, after the listening line: with --quiet the log line that
            // names it is not written, and a caller that asked for port 0 must learn the port.
            if let status { writeLine("metrics on http://\(status.server.address)/", to: STDOUT_FILENO) }
            if let master { writeLine("joining \(master)", to: STDOUT_FILENO) }
            let blocked = signals
            let waiter = Thread {
                var waitFor = blocked
                var caught: Int32 = 0
                sigwait(&waitFor, &caught)
                signalLogger.notice("signal \(caught): stopping gracefully")
                worker.shutdown()
            }
            waiter.start()
            worker.wait()
            status?.finish()
        } catch {
            fail(error.description)
        }
    }
}

/// One line written at once with write(2), unbuffered (a parent may be waiting for it).
func writeLine(_ text: String, to fd: Int32) {
    var line = text + "\n"
    line.withUTF8 { _ = write(fd, $0.baseAddress, $0.count) }
}

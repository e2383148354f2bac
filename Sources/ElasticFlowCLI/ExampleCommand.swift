import ArgumentParser
import ElasticFlow
import Foundation
import Logging

struct ExampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "example",
        abstract: "A 3-node word count on loopback: two worker processes of this program and a master.",
        discussion: """
            Starts two `elasticflow worker` processes on 127.0.0.1 (free ports, a random cookie \
            passed in their environment), counts a generated sample corpus from this process as \
            master with the logging interceptor, prints the top words and the step summary, and \
            stops the workers.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Size of the generated corpus.", valueName: "SIZE"))
    var size = "24MiB"

    @Option(name: .long, help: ArgumentHelp("Count this file instead of a generated corpus.", valueName: "PATH"))
    var file: String?

    @Option(name: .long, help: ArgumentHelp("Parcel size.", valueName: "SIZE"))
    var parcelSize = "2MiB"

    @Option(name: .long, help: ArgumentHelp("Parcel compression.", valueName: "CODEC"))
    var compression = "lz4"

    @Option(name: .long, help: "How many words to print.")
    var top = 10

    @OptionGroup(title: "Logging")
    var log: LogOptions

    func run() throws {
        log.bootstrap()
        let logger = LogOptions.cli
        do throws(ElasticFlowError) {
            let cookie = try Cookie(randomHex())
            var configuration = ClusterConfiguration(workers: [], cookie: cookie)
            configuration.parcelSize = try Limits.size(parcelSize, in: Limits.parcelSize, "--parcel-size")
            configuration.compression = try Compression(parsing: compression)
            try configuration.validate()
            guard top >= 1 else { throw .invalidArgument("--top must be at least 1, not \(top)") }
            let sampleSize = try Limits.size(size, in: Limits.exampleSize, "--size")
            var temporary: String?
            defer { if let temporary { try? FileManager.default.removeItem(atPath: temporary) } }
            let corpus: String
            if let file {
                corpus = file
            } else {
                let directory = NSTemporaryDirectory() + "elasticflow-example-\(getpid())"
                try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                temporary = directory
                corpus = directory + "/sample.txt"
                try writeSample(to: corpus, size: sampleSize)
            }
            let workers = try (1...2).map { (index: Int) throws(ElasticFlowError) in
                try WorkerProcess(name: "worker-\(index)", cookie: cookie, log: log, logger: logger)
            }
            defer { for worker in workers { worker.stop() } }
            configuration.workers = workers.map(\.address)
            logger.info(
                "master: counting \(corpus) with workers \(workers.map(\.address.description).joined(separator: ", "))")
            let report = try runOnCluster(
                configuration: configuration, task: "wordcount", sources: [.file(corpus)],
                options: TaskOptions(lowercase: true),
                interceptors: [LoggingInterceptor(verbose: true, logger: LogOptions.events)])
            guard case .wordCount(let counter) = report.output else { fail("no word count") }
            writeLine("top \(top) words:", to: STDOUT_FILENO)
            try counter.write(format: .text, limit: top, toFileDescriptor: STDOUT_FILENO)
            writeLine(report.summary.description, to: STDOUT_FILENO)
        } catch {
            fail(error.description)
        }
    }

    private func writeSample(to path: String, size: Int) throws(ElasticFlowError) {
        guard FileManager.default.createFile(atPath: path, contents: nil),
            let handle = FileHandle(forWritingAtPath: path)
        else { throw .io(path: path, operation: "create", errno: errno) }
        defer { try? handle.close() }
        var generator = CorpusGenerator(seed: 1)
        var written = 0
        while written < size {
            let chunk = generator.generate(byteCount: min(1 << 20, size - written))
            handle.write(Data(chunk))
            written += chunk.count
        }
    }
}

/// 128 random bits as hex (the system generator: getrandom on Linux).
private func randomHex() -> String {
    (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
}

/// A worker child process of this same executable, on a free loopback port.
final class WorkerProcess {
    let process = Process()
    let address: NodeAddress

    /// - Parameters:
    ///   - log: the logging flags the child gets (the same as this process's).
    ///   - logger: where this process logs the child's start.
    init(name: String, cookie: Cookie, log: LogOptions, logger: Logger) throws(ElasticFlowError) {
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["worker", "--listen", "127.0.0.1:0", "--threads", "2"] + log.arguments
        var environment = ProcessInfo.processInfo.environment
        environment["ELASTICFLOW_COOKIE"] = cookie.secret
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        do {
            try process.run()
        } catch {
            throw .cluster("cannot start \(name): \(error)")
        }
        // The worker's first line is `listening on HOST:PORT`.
        var line: [UInt8] = []
        while true {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            guard let first = byte.first else {
                throw .cluster("\(name) exited before listening")
            }
            if first == 0x0A { break }
            line.append(first)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("listening on ") else { throw .cluster("\(name) said '\(text)'") }
        address = try NodeAddress(parsing: String(text.dropFirst("listening on ".count)))
        logger.info("\(name): pid \(process.processIdentifier), listening on \(address)", metadata: ["node": "\(name)"])
    }

    /// SIGTERM (graceful) and wait.
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

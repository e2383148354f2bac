import Foundation

@testable import ElasticFlow

/// A real `elasticflow worker` process on a free loopback port, stopped (SIGTERM) on deinit.
final class TestWorker {
    let process = Process()
    let address: String
    private let errors = privatePipe()

    /// - Parameter arguments: the worker's arguments (default: listen on a free loopback port).
    /// - Parameter directory: the worker's working directory (where relative paths lead it).
    init(
        cookie: String, arguments: [String] = ["worker", "--listen", "127.0.0.1:0", "--threads", "2"],
        directory: String? = nil
    ) throws {
        process.executableURL = CommandRunner.executable
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["ELASTICFLOW_COOKIE"] = cookie
        process.environment = environment
        let output = privatePipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        var line: [UInt8] = []
        while true {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            guard let first = byte.first else { throw TestWorkerError.exited }
            if first == 0x0A { break }
            line.append(first)
        }
        let text = String(decoding: line, as: UTF8.self)
        if text.hasPrefix("joining ") {
            address = String(text.dropFirst("joining ".count))
            return
        }
        guard text.hasPrefix("listening on 127.0.0.1:") else { throw TestWorkerError.unexpected(text) }
        address = String(text.dropFirst("listening on ".count))
    }

    /// Stops the worker gracefully and returns what it logged.
    func stop() -> String {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        return String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    deinit { _ = stop() }
}

enum TestWorkerError: Error {
    case exited
    case unexpected(String)
}

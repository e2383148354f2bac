import Foundation

/// Runs the built `elasticflow` executable as a real process.
struct CommandResult {
    var status: Int32
    var stdout: [UInt8]
    var stderr: String
    /// Whether a signal ended it (a crash, or the runner's time-out) rather than exit().
    var signalled = false
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

enum CommandRunner {
    /// The executable SwiftPM built next to the test bundle.
    static var executable: URL {
        var directory = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("elasticflow")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        // Package root / .build / debug when the bundle layout differs.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/elasticflow")
    }

    /// - Parameter timeout: seconds after which the process is killed (SIGKILL; the result is then
    ///   `signalled`), so a command that should have refused at once cannot hang the suite.
    static func run(
        _ arguments: [String], stdin: [UInt8]? = nil, environment: [String: String]? = nil, directory: String? = nil,
        timeout: Double? = nil
    ) throws -> CommandResult {
        let process = Process()
        process.executableURL = executable
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.arguments = arguments
        if let environment { process.environment = environment }
        let output = privatePipe()
        let errors = privatePipe()
        process.standardOutput = output
        process.standardError = errors
        let input = privatePipe()
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let timeout {
            let pid = process.processIdentifier
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { [process] in
                if process.isRunning { kill(pid, SIGKILL) }
            }
        }
        if let stdin {
            DispatchQueue.global().async {
                input.fileHandleForWriting.write(Data(stdin))
                try? input.fileHandleForWriting.close()
            }
        }
        // Read both pipes concurrently so neither fills up and blocks the child.
        let errorData = LockedData()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errorData.set(errors.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return CommandResult(
            status: process.terminationStatus, stdout: Array(outputData),
            stderr: String(decoding: errorData.get(), as: UTF8.self),
            signalled: process.terminationReason == .uncaughtSignal)
    }
}

/// Data written by one thread and read by another after a DispatchGroup wait.
final class LockedData: @unchecked Sendable {
    // Guarded by lock.
    private let lock = NSLock()
    private var data = Data()
    func set(_ value: Data) { lock.withLock { data = value } }
    func get() -> Data { lock.withLock { data } }
}

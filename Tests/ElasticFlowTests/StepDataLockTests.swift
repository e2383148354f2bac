import Foundation
import Testing

@testable import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// Two masters on one step-data directory: exactly one runs, the other is refused at once.
@Suite struct StepDataLockTests {
    /// A journaled count over a FIFO that this test holds open (O_RDWR: the master's open never
    /// blocks, its reads wait for our bytes), so the master that won the lock cannot finish before
    /// the other has been refused: no timing in the test.
    final class HeldFIFO {
        let path: String
        private(set) var fd: Int32
        init(_ path: String) {
            self.path = path
            mkfifo(path, 0o600)
            fd = open(path, O_RDWR | O_CLOEXEC)
        }
        /// Writes the text and closes our end: the reader then sees the end of the stream.
        func finish(with text: [UInt8]) {
            let fd = self.fd
            self.fd = -1
            DispatchQueue.global().async {
                var offset = 0
                while offset < text.count {
                    let n = text.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
                    if n <= 0 { break }
                    offset += n
                }
                close(fd)
            }
        }
        deinit { if fd >= 0 { close(fd) } }
    }

    static func start(_ arguments: [String]) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = CommandRunner.executable
        process.arguments = arguments
        let output = privatePipe()
        let errors = privatePipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return (process, output, errors)
    }

    @Test func twoMastersStartedAtOnceExactlyOneRuns() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 21)
        let text = generator.generate(byteCount: 300_000)
        let expected = Reference.text(text, lowercase: false)
        for round in 0..<10 {
            // Even rounds: a new, empty directory; odd ones: the directory the last round used.
            let stepData = directory.path("steps-\(round / 2 * 2)")
            let fifo = HeldFIFO(directory.path("fifo-\(round)"))
            let arguments = ["count", "--step-data", stepData, "--parcel-size", "16KiB", fifo.path]
            let first = try Self.start(arguments)
            let second = try Self.start(arguments)
            // The refused one exits at once; the other waits for the FIFO's bytes.
            var refused: (Process, Pipe, Pipe)?
            var running: (Process, Pipe, Pipe)?
            while refused == nil {
                if !first.0.isRunning {
                    (refused, running) = (first, second)
                } else if !second.0.isRunning {
                    (refused, running) = (second, first)
                } else {
                    usleep(10_000)
                }
            }
            let message = String(
                decoding: refused!.2.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(refused!.0.terminationStatus != 0, "round \(round): \(message)")
            #expect(message.split(separator: "\n").count == 1, "round \(round): \(message)")
            #expect(message.contains("'\(stepData)' is in use by another master"), "round \(round): \(message)")
            #expect(message.contains("(pid \(running!.0.processIdentifier))"), "round \(round): \(message)")
            fifo.finish(with: text)
            let output = running!.1.fileHandleForReading.readDataToEndOfFile()
            running!.0.waitUntilExit()
            let errors = String(decoding: running!.2.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(running!.0.terminationStatus == 0, "round \(round): \(errors)")
            #expect(Array(output) == expected, "round \(round)")
        }
    }

    /// The lock dies with its holder, however it dies: after kill -9 the next master runs.
    @Test func aKilledHolderLeavesNoStaleLock() throws {
        let directory = try TemporaryDirectory()
        let stepData = directory.path("steps")
        let fifo = HeldFIFO(directory.path("fifo"))
        let holder = try Self.start(["count", "--step-data", stepData, fifo.path])
        // It holds the lock once its pid is in the lock file.
        let lockFile = stepData + "/" + StepDataLock.fileName
        while (try? String(contentsOfFile: lockFile, encoding: .utf8)) != "\(holder.0.processIdentifier)\n" {
            usleep(10_000)
        }
        let refused = try CommandRunner.run(["count", "--step-data", stepData, "-"], stdin: [], timeout: 30)
        #expect(refused.status != 0 && refused.stderr.contains("in use by another master"))
        kill(holder.0.processIdentifier, SIGKILL)
        holder.0.waitUntilExit()
        let next = try CommandRunner.run(
            ["count", "--step-data", stepData, "-"], stdin: Array("a b a\n".utf8), timeout: 30)
        #expect(next.status == 0, "\(next.stderr)")
        #expect(next.stdoutText == "a 2\nb 1\n")
    }

    /// In one process the holders share the lock (a queue, then a resume inside it).
    @Test func holdersInOneProcessShareIt() throws {
        let directory = try TemporaryDirectory()
        let first = try StepDataLock(directory: directory.path("steps"))
        let second = try StepDataLock(directory: directory.path("steps"))
        withExtendedLifetime((first, second)) {}
        _ = try StepDataLock(directory: directory.path("steps"))
    }
}

import ArgumentParser
import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write a seeded, English-like sample corpus (the same seed gives the same bytes)."
    )

    @Option(name: .long, help: ArgumentHelp("Approximate size, e.g. 40MiB.", valueName: "SIZE"))
    var size = "8MiB"

    @Option(name: .long, help: "Seed of the generator.")
    var seed: UInt64 = 1

    @Option(name: [.short, .long], help: ArgumentHelp("Output file (default: standard output).", valueName: "PATH"))
    var output: String?

    func run() throws {
        do throws(ElasticFlowError) {
            let total = try Limits.size(size, in: Limits.generateSize, "--size")
            let fd: Int32
            if let output {
                fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                if fd < 0 { throw .io(path: output, operation: "create", errno: errno) }
            } else {
                fd = STDOUT_FILENO
            }
            defer { if fd != STDOUT_FILENO { close(fd) } }
            var generator = CorpusGenerator(seed: seed)
            var written = 0
            let bar = ProgressBar()
            defer { bar.finish() }
            let clock = ContinuousClock()
            let started = clock.now
            var drawnAt = -1.0
            while written < total {
                let chunk = generator.generate(byteCount: min(1 << 20, total - written))
                try writeAll(fd, chunk, path: output ?? "standard output")
                written += chunk.count
                let elapsed = (clock.now - started).components
                let now = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
                if bar.isEnabled && now - drawnAt >= 0.2 {
                    bar.update(done: UInt64(written), total: UInt64(total), seconds: now)
                    drawnAt = now
                }
            }
        } catch {
            fail(error.description)
        }
    }
}

func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(ElasticFlowError) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 {
            if errno == EINTR { continue }
            throw .io(path: path, operation: "write to", errno: errno)
        }
        offset += n
    }
}

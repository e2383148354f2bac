import ArgumentParser
import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

struct CompressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "Write a seekable zstd file (independent frames and a seek table), which count splits by its frames.",
        discussion: """
            Any zstd tool decompresses the result. A compressed input (gzip, zstd, lz4, bzip2) is \
            decompressed first unless --decompress none.
            """
    )

    @Flag(name: .long, help: "Write zstd's seekable format (the only format compress writes; required).")
    var seekable = false

    @Option(name: .long, help: ArgumentHelp("Bytes of text per frame (1...128MiB).", valueName: "SIZE"))
    var frameSize = "1MiB"

    @Option(name: .long, help: ArgumentHelp("zstd level (1...19).", valueName: "N"))
    var level = 3

    @Option(name: .long, help: ArgumentHelp("auto (decompress a compressed input first) or none.", valueName: "MODE"))
    var decompress = "auto"

    @Option(name: [.short, .long], help: ArgumentHelp("Output file (default: standard output).", valueName: "PATH"))
    var output: String?

    @Argument(help: ArgumentHelp("Input file; '-' or none reads standard input.", valueName: "INPUT"))
    var input: String?

    func run() throws {
        do throws(ElasticFlowError) {
            guard seekable else { throw .invalidArgument("compress writes zstd's seekable format: give --seekable") }
            let size = try Limits.size(frameSize, in: SeekableWriter.frameSizes, "--frame-size")
            let mode = try Decompression(parsing: decompress)
            let source: DataSource = input == nil || input == "-" ? .standardInput : .file(input!)
            if output == nil && isatty(STDOUT_FILENO) != 0 {
                throw .invalidArgument("refusing to write compressed data to a terminal: give -o PATH or redirect")
            }
            // Written under a temporary name and renamed at the end, so a failure leaves no half file.
            let temporary = output.map { "\($0).partial-\(getpid())" }
            let fd: Int32
            if let temporary {
                fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                if fd < 0 { throw .io(path: output!, operation: "create", errno: errno) }
            } else {
                fd = STDOUT_FILENO
            }
            do throws(ElasticFlowError) {
                _ = try SeekableWriter.compress(
                    source, to: fd, outputName: output ?? "standard output", frameSize: size, level: level,
                    decompression: mode)
                if let temporary {
                    guard close(fd) == 0 else { throw .io(path: output!, operation: "close", errno: errno) }
                    guard rename(temporary, output!) == 0 else {
                        throw .io(path: output!, operation: "rename to", errno: errno)
                    }
                }
            } catch {
                if let temporary {
                    close(fd)
                    unlink(temporary)
                }
                throw error
            }
        } catch {
            fail(error.description)
        }
    }
}

import Foundation
import Testing

@testable import ElasticFlow

/// The progress bar: never wider than the terminal, follows a resize, erased at the end and on
/// Ctrl-C, silent when standard error is not a terminal. The CLI runs with its standard error on a
/// real pseudo-terminal whose size the test sets.
@Suite(.serialized) struct ProgressBarTests {
    @Test func theLineFitsEveryWidthAndDropsTheLeastUsefulPartsFirst() {
        let cases: [(UInt64, UInt64?, (Int, Int)?)] = [
            (0, 100_000_000, (0, 0)), (37_000_000, 100_000_000, (9, 25)), (100_000_000, 100_000_000, (25, 25)),
            (123_456_789_000, nil, (100_000, 200_000)), (5, 3, nil), (0, nil, nil),
        ]
        for (done, total, parcels) in cases {
            for columns in 0...240 {
                let line = ProgressBar.line(done: done, total: total, seconds: 2.5, parcels: parcels, columns: columns)
                #expect(line.count <= max(0, columns - 1), "\(columns) columns: '\(line)'")
                #expect(line.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "printable ASCII only")
            }
        }
        let wide = ProgressBar.line(done: 37_000_000, total: 100_000_000, seconds: 2, parcels: (9, 25), columns: 120)
        #expect(wide.hasPrefix("[") && wide.contains("37%") && wide.contains("37.0/100.0 MB"), "\(wide)")
        #expect(wide.contains("18.5 MB/s") && wide.contains("ETA 3.4 s") && wide.contains("9/25 parcels"), "\(wide)")
        let narrow = ProgressBar.line(done: 37_000_000, total: 100_000_000, seconds: 2, parcels: (9, 25), columns: 30)
        #expect(narrow == "37%  37.0/100.0 MB  18.5 MB/s", "\(narrow)")
        #expect(ProgressBar.line(done: 1, total: 2, seconds: 1, parcels: nil, columns: 5) == "50%")
    }

    @Test func generateDrawsWithinTheTerminalFollowsAResizeAndIsErasedOnCtrlC() throws {
        let directory = try TemporaryDirectory()
        let terminal = try PseudoTerminal(columns: 60)
        let process = Process()
        process.executableURL = CommandRunner.executable
        process.arguments = ["generate", "--size", "16GiB", "-o", directory.path("big.txt")]
        process.standardError = FileHandle(fileDescriptor: terminal.secondary, closeOnDealloc: false)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        terminal.closeSecondary()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        let first = try terminal.read(until: { $0.filter { $0 == 0x0D }.count >= 2 })  // two frames at 60 columns
        terminal.resize(columns: 24)
        let seen = first.count
        let after = try terminal.read(
            until: { $0.count > seen && Self.frames($0[seen...]).count >= 3 }, startingWith: first)
        kill(process.processIdentifier, SIGINT)
        let all = try terminal.readToEnd(startingWith: after)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGINT)
        let before = Self.frames(all[..<seen])
        #expect(!before.isEmpty)
        for frame in before { #expect(frame.count <= 59, "'\(frame)' is wider than 60 columns") }
        #expect(before.contains { $0.contains("%") && $0.contains("MB/s") }, "\(before)")
        // The frame being drawn when the size changed may be the old width; every later one fits.
        let resized = Self.frames(all[seen...]).dropFirst()
        #expect(!resized.isEmpty)
        for frame in resized { #expect(frame.count <= 23, "'\(frame)' is wider than 24 columns") }
        #expect(Array(all.suffix(4)) == Array("\r\u{1B}[K".utf8), "the bar is erased: \(Array(all.suffix(12)))")
    }

    @Test func aCountOnATerminalEndsWithTheBarErasedAndNothingWhenNotATerminal() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 71)
        let text = generator.generate(byteCount: 8_000_000)
        let path = try directory.file("t.txt", text)
        let terminal = try PseudoTerminal(columns: 40)
        let process = Process()
        process.executableURL = CommandRunner.executable
        process.arguments = ["count", "--parcel-size", "64KiB", "--threads", "1", path]
        process.standardError = FileHandle(fileDescriptor: terminal.secondary, closeOnDealloc: false)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        terminal.closeSecondary()
        let all = try terminal.readToEnd(startingWith: [])
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        for frame in Self.frames(all[...]) { #expect(frame.count <= 39, "'\(frame)'") }
        if !all.isEmpty { #expect(Array(all.suffix(4)) == Array("\r\u{1B}[K".utf8)) }
        // Standard error on a pipe: no bar at all.
        let piped = try CommandRunner.run(["generate", "--size", "8MiB", "-o", directory.path("g.txt")])
        #expect(piped.status == 0 && piped.stderr.isEmpty, "\(piped.stderr)")
    }

    @Test func theTotalOfACompressedFileIsItsTextOrUnknown() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 72)
        let text = generator.generate(byteCount: 300_000)
        let plain = try directory.file("t.txt", text)
        let seekable = directory.path("t.txt.zst")
        let compress = try CommandRunner.run(["compress", "--seekable", "--frame-size", "64KiB", "-o", seekable, plain])
        #expect(compress.status == 0, "\(compress.stderr)")
        let gzip = try CommandRunner.run(["-c", "-k", plain], executable: "/bin/gzip")
        let gz = try directory.file("t.txt.gz", gzip.stdout)
        let size = UInt64(text.count)
        #expect(DataSource.totalSize(of: [.file(plain)], decompression: .auto) == size)
        #expect(DataSource.totalSize(of: [.file(seekable), .file(plain)], decompression: .auto) == 2 * size)
        #expect(DataSource.totalSize(of: [.file(gz), .file(plain)], decompression: .auto) == nil, "unknown")
        #expect(DataSource.totalSize(of: [.file(gz)], decompression: .none) == UInt64(gzip.stdout.count))
        #expect(DataSource.totalSize(of: [.standardInput], decompression: .auto) == nil)
    }

    /// The frames drawn: the text between carriage returns, without the erase-to-end sequence.
    static func frames(_ bytes: ArraySlice<UInt8>) -> [String] {
        bytes.split(separator: 0x0D).map {
            String(decoding: $0, as: UTF8.self).replacingOccurrences(of: "\u{1B}[K", with: "")
        }
        .filter { !$0.isEmpty }
    }
}

/// A pseudo-terminal pair: the test reads the primary side; a child writes to the secondary.
final class PseudoTerminal {
    let primary: Int32
    private(set) var secondary: Int32

    struct Failure: Error { let call: String }

    init(columns: UInt16) throws {
        // posix_openpt and friends, as Linux does them (devpts: grantpt has nothing to do). The
        // ioctl numbers are _IOW('T', 0x31, int) and _IOR('T', 0x30, unsigned int), which Swift
        // cannot import as macros.
        let TIOCSPTLCK: UInt = 0x4004_5431
        let TIOCGPTN: UInt = 0x8004_5430
        primary = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        var unlock: Int32 = 0
        var number: UInt32 = 0
        guard primary >= 0, ioctl(primary, TIOCSPTLCK, &unlock) == 0, ioctl(primary, TIOCGPTN, &number) == 0
        else { throw Failure(call: "/dev/ptmx") }
        secondary = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard secondary >= 0 else { throw Failure(call: "open /dev/pts/\(number)") }
        var settings = termios()
        tcgetattr(secondary, &settings)
        cfmakeraw(&settings)  // bytes as written: no newline translation
        tcsetattr(secondary, TCSANOW, &settings)
        resize(columns: columns)
    }

    deinit {
        close(primary)
        closeSecondary()
    }

    func resize(columns: UInt16) {
        var size = winsize(ws_row: 24, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(primary, UInt(TIOCSWINSZ), &size)
    }

    /// The parent's copy, once the child has its own.
    func closeSecondary() {
        if secondary >= 0 { close(secondary) }
        secondary = -1
    }

    /// Reads until `done` holds for everything read (or 60 s pass: then throws).
    func read(until done: ([UInt8]) -> Bool, startingWith start: [UInt8] = []) throws -> [UInt8] {
        var bytes = start
        let deadline = Date().addingTimeInterval(60)
        while !done(bytes) {
            guard Date() < deadline else { throw Failure(call: "read: timed out with \(bytes.count) bytes") }
            var pollFD = pollfd(fd: primary, events: Int16(POLLIN), revents: 0)
            guard poll(&pollFD, 1, 100) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = Glibc.read(primary, &chunk, chunk.count)
            guard n > 0 else { throw Failure(call: "read: the terminal closed with \(bytes.count) bytes") }
            bytes += chunk[..<n]
        }
        return bytes
    }

    /// Reads until the child's side is closed (EIO).
    func readToEnd(startingWith start: [UInt8]) throws -> [UInt8] {
        var bytes = start
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            var pollFD = pollfd(fd: primary, events: Int16(POLLIN), revents: 0)
            guard poll(&pollFD, 1, 100) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = Glibc.read(primary, &chunk, chunk.count)
            if n <= 0 { return bytes }
            bytes += chunk[..<n]
        }
        throw Failure(call: "read: the child kept the terminal open")
    }
}

import Foundation
import Testing

@testable import ElasticFlow

/// The README's runnable Swift blocks, as written: `Tests/ReadmeSnippets/main.swift` must be what
/// `scripts/check_snippets.py --readme` makes of README.md, and the program built from it runs a
/// real worker and master on loopback and prints what the blocks say.
@Suite struct ReadmeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func theProgramIsTheReadmesRunnableBlocks() throws {
        let result = try CommandRunner.run(
            [
                "python3", "scripts/check_snippets.py", "--readme", "README.md", "Tests/ReadmeSnippets/main.swift",
                "--check",
            ],
            directory: Self.root.path, timeout: 60, executable: "/usr/bin/env")
        #expect(result.status == 0, "README.md and Tests/ReadmeSnippets/main.swift differ: \(result.stderr)")
    }

    /// The drift check can fail: a program with one character changed is refused.
    @Test func theDriftCheckRefusesAnEditedProgram() throws {
        let directory = try TemporaryDirectory()
        var program = try String(contentsOf: Self.root.appendingPathComponent("Tests/ReadmeSnippets/main.swift"))
        program = program.replacingOccurrences(of: "limit: 10", with: "limit: 11")
        let edited = try directory.file("main.swift", Array(program.utf8))
        let result = try CommandRunner.run(
            ["python3", "scripts/check_snippets.py", "--readme", "README.md", edited, "--check"],
            directory: Self.root.path, timeout: 60, executable: "/usr/bin/env")
        #expect(result.status == 1 && result.stderr.contains("differs from the runnable blocks"), "\(result.stderr)")
    }

    @Test func theReadmeProgramRunsAsWritten() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 50)
        let text = generator.generate(byteCount: 300_000)
        _ = try directory.file("big.txt", text)
        try FileManager.default.createDirectory(atPath: directory.path("corpus"), withIntermediateDirectories: true)
        _ = try directory.file("corpus/a.txt", Array("one two\nthree\n".utf8))
        _ = try directory.file("corpus/b.txt", Array("four\n".utf8))
        _ = try directory.file("listed.txt", Array("five six\n".utf8))
        _ = try directory.file("list0", Array("listed.txt\0".utf8))
        let program = CommandRunner.executable.deletingLastPathComponent().appendingPathComponent("ReadmeSnippets")
        let result = try CommandRunner.run([], directory: directory.url.path, timeout: 120, executable: program.path)
        #expect(result.status == 0 && !result.signalled, "\(result.stdoutText) \(result.stderr)")
        let lines = result.stdoutText.split(separator: "\n").map(String.init)

        // One node: the top ten, as the reference counts them.
        let top = String(decoding: Reference.text(text, lowercase: true, top: 10), as: UTF8.self)
        #expect(lines.prefix(10).joined(separator: "\n") + "\n" == top, "\(lines.prefix(10))")
        #expect(lines.contains("\(text.count) bytes"))
        #expect(lines.contains("corpus: 6 words"), "\(lines)")
        // The cluster: the custom tasks ran (the registry reached the master and the worker).
        let newlines = text.filter { $0 == 0x0A }.count
        #expect(lines.contains("lines: \(newlines)"), "\(lines)")
        let longest = text.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self).count }.max() ?? 0
        #expect(lines.contains("longest: \(longest) characters"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("step 1 (wordcount): ") && $0.contains(" 0 task errors") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("  parcels by node: ") && $0.contains("127.0.0.1:") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("rows: ") })
        // The journaled queue: both steps completed, the count step's total is the file's.
        #expect(lines.contains(#"["1 completed", "2 completed"]"#), "\(lines)")
        let words = Reference.counts(text, lowercase: false).reduce(0) { $0 + $1.1 }
        #expect(lines.contains("step 1: \(words) words"), "\(lines)")
        #expect(FileManager.default.fileExists(atPath: directory.path("steps")))
    }
}

extension StepOutput {
    var value: FlowValue? {
        if case .value(let value) = self { return value }
        return nil
    }
}

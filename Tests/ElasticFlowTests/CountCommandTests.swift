import Testing

@testable import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

/// The `elasticflow count` executable, run as a real process.
@Suite struct CountCommandTests {
    @Test func countsFilesExactlyLikeTheReference() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 44)
        let text = generator.generate(byteCount: 2_000_000)
        let path = try directory.file("corpus.txt", text)
        let plain = try CommandRunner.run(["count", "--parcel-size", "64KiB", path])
        #expect(plain.status == 0)
        #expect(Bytes(plain.stdout) == Bytes(Reference.text(text, lowercase: false)))
        let folded = try CommandRunner.run(["count", "--lowercase", "--threads", "2", "--top", "10", path])
        #expect(Bytes(folded.stdout) == Bytes(Reference.text(text, lowercase: true, top: 10)))
    }

    @Test func readsStandardInput() throws {
        let input = Array("b a\tb\r\nc b\n".utf8)
        let result = try CommandRunner.run(["count", "-"], stdin: input)
        #expect(result.status == 0)
        #expect(result.stdoutText == "b 3\na 1\nc 1\n")
    }

    @Test func printsNothingForAnEmptyFile() throws {
        let directory = try TemporaryDirectory()
        let result = try CommandRunner.run(["count", try directory.file("empty", [])])
        #expect(result.status == 0 && result.stdout.isEmpty && result.stderr.isEmpty)
    }

    @Test func formatsTSVAndJSON() throws {
        let result = try CommandRunner.run(["count", "--format", "tsv", "-"], stdin: Array("x y x\n".utf8))
        #expect(result.stdoutText == "x\t2\ny\t1\n")
        let json = try CommandRunner.run(["count", "--format", "json", "-"], stdin: Array("x y x\n".utf8))
        #expect(json.stdoutText == "[\n{\"word\":\"x\",\"count\":2},\n{\"word\":\"y\",\"count\":1}\n]\n")
    }

    @Test func badInputGetsOneLineAndANonZeroExit() throws {
        let directory = try TemporaryDirectory()
        let cases: [([String], String)] = [
            (["count", directory.path("missing.txt")], "No such file or directory"),
            (["count", "--parcel-size", "lots", "-"], "invalid size"),
            (["count", "--top", "0", "-"], "--top"),
            (["count", "--format", "xml", "-"], "xml"),
        ]
        for (arguments, message) in cases {
            let result = try CommandRunner.run(arguments)
            #expect(result.status != 0, "\(arguments)")
            #expect(result.stdout.isEmpty, "\(arguments)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
        let single = try CommandRunner.run(["count", directory.path("missing.txt")])
        #expect(single.stderr.split(separator: "\n").count == 1)
    }

    // Root reads any file, so this runs only for other users; missing files are covered above.
    @Test(.enabled(if: getuid() != 0, "root can read a file with mode 000"))
    func unreadableFileIsReported() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("secret", Array("x\n".utf8))
        chmod(path, 0)
        let result = try CommandRunner.run(["count", path])
        #expect(result.status != 0 && result.stderr.contains("Permission denied"))
    }

    @Test func helpDocumentsEveryFlag() throws {
        let result = try CommandRunner.run(["count", "--help"])
        for flag in ["--lowercase", "--top", "--format", "--threads", "--parcel-size", "FILE"] {
            #expect(result.stdoutText.contains(flag), "\(flag)")
        }
    }
}

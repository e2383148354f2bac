import Foundation
import Testing

@testable import ElasticFlow

/// Copy mode over files with `--compression none`: the master reads each parcel once (for its
/// receipt), lets go of the buffer, and the payload goes from the page cache to the socket
/// (`sendfile`). Retries send from the file again, so a file that changes is caught.
@Suite(.serialized) struct CopyModeTests {
    @Test func parcelsSentFromTheFileMatchTheSingleNodeCountAtManyParcelSizes() throws {
        let directory = try TemporaryDirectory()
        let text = ClusterTests.corpus()
        let path = try directory.file("corpus.txt", text)
        let tail = try directory.file("tail.txt", Array("\r\nlast\twords  without newline".utf8))
        let empty = try directory.file("empty.txt", [])
        let workers = [try TestWorker(cookie: "f"), try TestWorker(cookie: "f")]
        let single = try CommandRunner.run(["count", path, empty, tail])
        #expect(single.status == 0)
        for size in ["1KiB", "64KiB", "1MiB"] {
            for master in ["--master-work", "--no-master-work"] {
                let distributed = try CommandRunner.run(
                    [
                        "count", "--workers", workers.map(\.address).joined(separator: ","), "--compression", "none",
                        "--parcel-size", size, master, "--summary", path, empty, tail,
                    ], environment: ["ELASTICFLOW_COOKIE": "f"])
                #expect(distributed.status == 0, "\(distributed.stderr)")
                #expect(Bytes(distributed.stdout) == Bytes(single.stdout), "parcel size \(size) \(master)")
            }
        }
    }

    @Test func aWorkerKilledMidStepHasItsParcelsSentAgainFromTheFile() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 51)
        let text = generator.generate(byteCount: 2_000_000)
        let path = try directory.file("corpus.txt", text)
        let workers = [try TestWorker(cookie: "k"), try TestWorker(cookie: "k")]
        var configuration = try ReliabilityTests.configuration(workers, cookie: "k")
        configuration.compression = .none
        let master = Master(configuration: configuration)
        let progress = ReliabilityTests.Progress()
        master.add(progress)
        let step = ReliabilityTests.BackgroundStep(
            master, task: "slow-wordcount", path: path, options: TaskOptions(parameters: ["delay-ms": "2"]))
        progress.wait(forAggregated: 20)
        kill(workers[0].process.processIdentifier, SIGKILL)
        let report = try step.wait()
        guard case .wordCount(let counter) = report.output else { throw TestWorkerError.exited }
        #expect(try counter.rendered(format: .text) == Reference.text(text, lowercase: false))
        #expect(report.summary.retries >= 1, "the killed worker held parcels that went elsewhere")
        #expect(report.summary.receiptsClosed == report.summary.parcels)
    }

    @Test func aFileChangedBeforeItsParcelsAreSentAgainFailsTheStepNamingIt() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 52)
        let text = generator.generate(byteCount: 1_000_000)
        let path = try directory.file("changing.txt", text)
        let workers = [try TestWorker(cookie: "m"), try TestWorker(cookie: "m")]
        var configuration = try ReliabilityTests.configuration(workers, cookie: "m")
        configuration.compression = .none
        let master = Master(configuration: configuration)
        let progress = ReliabilityTests.Progress()
        master.add(progress)
        let step = ReliabilityTests.BackgroundStep(
            master, task: "slow-wordcount", path: path, options: TaskOptions(parameters: ["delay-ms": "5"]))
        progress.wait(forAggregated: 5)
        var changed = text
        for index in stride(from: 0, to: changed.count, by: 89) where changed[index] != 0x0A { changed[index] = 0x59 }
        try Data(changed).write(to: URL(fileURLWithPath: path))
        kill(workers[0].process.processIdentifier, SIGKILL)  // its parcels must be sent again
        #expect {
            _ = try step.wait()
        } throws: { error in
            "\(error)".contains(path) && "\(error)".contains("changed")
        }
    }
}

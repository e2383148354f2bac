import Foundation
import Testing

@testable import ElasticFlow

/// Results the master can trust, bad nodes excluded, stragglers raced (issue 11, items 3 and 4).
/// Each test runs a real `elasticflow count` master with a healthy real worker and a hostile peer
/// played by test code (`HostileWorker`), and compares the output byte for byte with the naive
/// reference.
@Suite(.serialized) struct TrustTests {
    /// The parcels a hostile peer received (sequence numbers, in order), for the tests to check.
    final class Seen: @unchecked Sendable {
        // Guarded by lock.
        private let lock = NSLock()
        private var sequences: [UInt64] = []
        var all: [UInt64] { lock.withLock { sequences } }
        /// Records a parcel. - Returns: how many the peer had received before it.
        @discardableResult
        func add(_ sequence: UInt64) -> Int {
            lock.withLock {
                sequences.append(sequence)
                return sequences.count - 1
            }
        }
    }

    static let cookie = "trust"

    /// A corpus in a file, and the arguments of a master over it with `workers`: copy mode,
    /// uncompressed (so a hostile peer sees the parcel's bytes), 16 KiB parcels, no master work.
    /// A master's command line over a corpus in a directory of its own (kept while this lives).
    struct Setup {
        var arguments: [String]
        var text: [UInt8]
        let directory: TemporaryDirectory

        /// The output is the reference count, byte for byte.
        func isExact(_ result: CommandResult) -> Bool { result.stdout == Reference.text(text, lowercase: false) }
    }

    static func master(_ workers: [String], extra: [String] = [], bytes: Int = 200_000) throws -> Setup {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 111)
        let text = generator.generate(byteCount: bytes)
        let path = try directory.file("corpus.txt", text)
        let arguments =
            [
                "count", "--workers", workers.joined(separator: ","), "--no-master-work", "--compression", "none",
                "--parcel-size", "16KiB", "--heartbeat-timeout", "3", "--summary",
            ] + extra + [path]
        return Setup(arguments: arguments, text: text, directory: directory)
    }

    /// Runs a master over `hostile` and a healthy real worker (`healthyFirst`: ties go to it, so
    /// the hostile peer sees gaps in the sequence), and expects exit 0 and the exact count.
    /// - Returns: what the master printed.
    static func beside(
        _ hostile: HostileWorker, healthyFirst: Bool = false, extra: [String] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> CommandResult {
        let healthy = try TestWorker(cookie: cookie)
        let workers = healthyFirst ? [healthy.address, hostile.address] : [hostile.address, healthy.address]
        let setup = try master(workers, extra: extra)
        let result = try run(setup.arguments)
        #expect(result.status == 0, "\(result.stderr)", sourceLocation: sourceLocation)
        #expect(setup.isExact(result), "nothing wrong is printed", sourceLocation: sourceLocation)
        return result
    }

    static func run(_ arguments: [String]) throws -> CommandResult {
        var environment = ProcessInfo.processInfo.environment
        environment["ELASTICFLOW_COOKIE"] = cookie
        return try CommandRunner.run(arguments, environment: environment)
    }

    @Test func aWorkerAnsweringErrorToEveryParcelIsExcludedAndTheStepIsExact() throws {
        let seen = Seen()
        let hostile = try HostileWorker(cookie: Self.cookie) { connection in
            try connection.serveParcels { parcel in
                seen.add(parcel.id)
                try connection.send(.error, aux: parcel.aux, id: parcel.id, payload: Array("hostile: no".utf8))
            }
        }
        let result = try Self.beside(hostile)
        #expect(result.stderr.contains("node-excluded: \(hostile.address): 3 failures in step 1"), "\(result.stderr)")
        #expect(result.stderr.contains("excluded \(hostile.address)"), "the summary names it: \(result.stderr)")
        // Excluded at its third failure: it got nothing after that.
        #expect(seen.all.count <= 3 + 16, "\(seen.all)")
        #expect(Set(seen.all).count == seen.all.count, "no parcel went back to the node it failed on: \(seen.all)")
    }

    /// A worker's "bad input" (a word over the cap, `frameFlagBadInput`) fails a step only once a
    /// second node, or the master, confirms it: one hostile worker cannot fail a step with it.
    @Test func aWorkerClaimingBadInputForEveryParcelCannotFailTheStep() throws {
        let seen = Seen()
        let hostile = try HostileWorker(cookie: Self.cookie) { connection in
            try connection.serveParcels { parcel in
                seen.add(parcel.id)
                try connection.send(
                    .error, flags: frameFlagBadInput, aux: parcel.aux, id: parcel.id,
                    payload: Array("a word is longer than the word-size cap".utf8))
            }
        }
        let result = try Self.beside(hostile)
        #expect(!seen.all.isEmpty, "the hostile peer got parcels")
        #expect(!result.stderr.contains("longer than the word-size cap of"), "\(result.stderr)")
        #expect(result.stderr.contains("node-excluded: \(hostile.address)"), "\(result.stderr)")
    }

    @Test func aWorkerThatHeartbeatsButNeverAnswersNeverGetsItsOverdueParcelsAgain() throws {
        let seen = Seen()
        let hostile = try HostileWorker(cookie: Self.cookie) { connection in
            try connection.serveParcels { parcel in seen.add(parcel.id) }
        }
        let result = try Self.beside(hostile, extra: ["--parcel-timeout", "0.5", "--no-speculation"])
        #expect(!seen.all.isEmpty)
        #expect(Set(seen.all).count == seen.all.count, "an overdue parcel was sent again to its node: \(seen.all)")
        #expect(result.stderr.contains("node-excluded: \(hostile.address)"), "\(result.stderr)")
        #expect(result.stderr.contains("overdue"), "\(result.stderr)")
    }

    /// The lies a hostile worker tells in a RESULT, and the reason the master gives.
    enum Forgery: String, CaseIterable, CustomStringConvertible {
        case receiptOfAnotherNode, wrongStep, moreWordsThanBytes, countOf2To64Minus1, countsThatSumPast2To64
        case keyOutsideItsPartition, noDigest, digestOfAnotherLength
        var description: String { rawValue }

        var reason: String {
            switch self {
            case .receiptOfAnotherNode: "which was never sent to it"
            case .wrongStep: "a result for step 7 while step 1 runs"
            case .moreWordsThanBytes: "words in"
            case .countOf2To64Minus1: "counts 18446744073709551615 words in"
            case .countsThatSumPast2To64: "has counts that sum past 2^64 - 1"
            case .keyOutsideItsPartition: "is not a count table (malformed serialized data)"
            case .noDigest: "without the digest it was asked for"
            case .digestOfAnotherLength: "with a digest of"
            }
        }

        /// The master's extra arguments: digests are asked for only where parcels are cut unread
        /// (64 KiB parcels and more; smaller ones are read).
        var extra: [String] {
            switch self {
            case .noDigest, .digestOfAnotherLength: ["--parcel-size", "64KiB"]
            default: []
            }
        }

        /// Answers `parcel` (the peer's `index`th) with the lie.
        func answer(_ parcel: HostileFrame, index: Int, seen: [UInt64], on connection: HostileConnection) throws {
            var sequence = parcel.id
            var step = parcel.aux
            var table = HostileTable.forged([("word", 1)])
            var digest = parcel.digest
            switch self {
            case .receiptOfAnotherNode:
                // A receipt below ours that we were not sent: it went to the healthy worker.
                guard let other = (1..<parcel.id).reversed().first(where: { !seen.contains($0) }) else {
                    return try connection.sendResult(
                        step: step, sequence: parcel.id, table: try HostileTable.honest(parcel.payload), digest: digest)
                }
                sequence = other
            case .wrongStep: step = 7
            case .moreWordsThanBytes: table = HostileTable.forged([("w", UInt64(parcel.payload.count) + 1)])
            case .countOf2To64Minus1: table = HostileTable.forged([("w", UInt64.max)])
            case .countsThatSumPast2To64: table = HostileTable.forged([("w", 1 << 63), ("v", 1 << 63)])
            case .keyOutsideItsPartition: table = HostileTable.inBothPartitions("w")
            case .noDigest:
                table = try HostileTable.honest(parcel.payload)
                digest = nil
            case .digestOfAnotherLength:
                table = try HostileTable.honest(parcel.payload)
                digest?.length += 1
            }
            try connection.sendResult(step: step, sequence: sequence, table: table, digest: digest)
        }
    }

    @Test(arguments: Forgery.allCases)
    func aForgedResultIsRefusedWithItsReasonAndTheStepIsExact(_ forgery: Forgery) throws {
        let seen = Seen()
        let hostile = try HostileWorker(cookie: Self.cookie) { connection in
            try connection.serveParcels { parcel in
                let index = seen.add(parcel.id)
                try forgery.answer(parcel, index: index, seen: seen.all, on: connection)
            }
        }
        // One parcel in flight per node: the healthy worker always holds some, so the hostile
        // peer sees gaps in the sequence (with 16 in flight it may get every parcel at once,
        // and then it has no other node's receipt to claim).
        let result = try Self.beside(hostile, healthyFirst: true, extra: ["--in-flight", "1"] + forgery.extra)
        #expect(result.stderr.contains("result-refused: \(hostile.address): "), "\(result.stderr)")
        #expect(result.stderr.contains(forgery.reason), "\(result.stderr)")
        #expect(result.stderr.contains("results refused"), "the summary counts them: \(result.stderr)")
    }

    @Test func aForgedResultFromTheOnlyWorkerFailsTheStepWithAClearError() throws {
        let hostile = try HostileWorker(cookie: Self.cookie) { connection in
            try connection.serveParcels { parcel in
                try Forgery.countOf2To64Minus1.answer(parcel, index: 0, seen: [], on: connection)
            }
        }
        let setup = try Self.master([hostile.address])
        let result = try Self.run(setup.arguments)
        #expect(result.status != 0)
        #expect(result.stdout.isEmpty, "never a wrong count")
        let last = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.contains("every node left is excluded: \(hostile.address) (3 failures"), "\(result.stderr)")
    }

    @Test func aStragglingParcelGetsASpeculativeCopyAndTheFirstResultWins() throws {
        let seen = Seen()
        let hostile = try HostileWorker(cookie: Self.cookie) { connection in
            try connection.serveParcels { parcel in
                // Honest, but its second parcel never comes back (the default parcel time-out
                // is 120 s: only a speculative copy finishes the step in time).
                if seen.add(parcel.id) == 1 { return }
                try connection.sendResult(
                    step: parcel.aux, sequence: parcel.id, table: try HostileTable.honest(parcel.payload),
                    digest: parcel.digest)
            }
        }
        let result = try Self.beside(hostile, healthyFirst: true)
        #expect(result.stderr.contains("1 speculative copies of stragglers, 1 answered first"), "\(result.stderr)")
        #expect(seen.all.count >= 2)
    }

    @Test func aSilentWorkerAtTheDefaultParcelTimeoutIsRacedBySpeculation() throws {
        // Before speculation a step waited 120 s here (issue 11, finding 4).
        let hostile = try HostileWorker(cookie: Self.cookie) { connection in try connection.serveParcels { _ in } }
        let result = try Self.beside(hostile)
        #expect(result.stderr.contains("speculative copies of stragglers"), "\(result.stderr)")
        #expect(!result.stderr.contains("node-excluded"), "a straggler is not a failure: \(result.stderr)")
    }

    @Test func aJoinOnlyMasterWithNoJoinerSaysItWaitsThenGivesUp() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("t.txt", Array("a b c\n".utf8))
        let result = try Self.run([
            "count", "--workers", "", "--listen", "127.0.0.1:0", "--no-master-work", "--join-timeout", "0.5", path,
        ])
        #expect(result.status != 0)
        #expect(result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n").map(String.init)
        #expect(
            lines.filter { $0.contains("waiting up to 0.500 s for workers to join on 127.0.0.1:") }.count == 1,
            "\(lines)")
        #expect(
            lines.last?.contains("no worker joined step 1 within 0.500 s (listening on 127.0.0.1:") == true, "\(lines)")
        for bad in ["0", "inf", "nan", "1e300"] {
            let refused = try Self.run([
                "count", "--workers", "", "--listen", "127.0.0.1:0", "--join-timeout", bad, path,
            ])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("joinTimeout"), "\(bad): \(refused.stderr)")
        }
    }

    @Test func aJoinerThatLiesIsRefusedAndTheJoinOnlyMasterFailsClearly() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 5)
        let path = try directory.file("t.txt", generator.generate(byteCount: 50_000))
        let port = try freePort()
        let liar = Thread {
            for _ in 0..<50 {
                guard let connection = try? HostileConnection.join(port: port, cookie: Self.cookie) else {
                    usleep(50_000)
                    continue
                }
                try? connection.serveParcels { parcel in
                    try Forgery.wrongStep.answer(parcel, index: 0, seen: [], on: connection)
                }
                connection.close()
                return
            }
        }
        liar.start()
        let result = try Self.run([
            "count", "--workers", "", "--listen", "127.0.0.1:\(port)", "--no-master-work", "--compression", "none",
            "--parcel-size", "16KiB", "--exclude-after", "1", "--join-timeout", "20", path,
        ])
        #expect(result.status != 0)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("a result for step 7 while step 1 runs"), "\(result.stderr)")
        #expect(result.stderr.contains("every node left is excluded: joined:127.0.0.1:"), "\(result.stderr)")
    }
}

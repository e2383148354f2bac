import Foundation
import Testing

@testable import ElasticFlow

/// Every numeric flag of every command, and every numeric cluster-file value, given hostile values
/// (0, -1, huge, inf, nan, garbage): each is refused with one line naming it and a non-zero exit,
/// never a signal or a hang (each run is killed after 20 s, which would fail the test).
@Suite struct FlagLimitsTests {
    /// A kind of flag and the hostile values it must refuse.
    enum Kind {
        case count, seconds, size, address, codec
        var hostile: [String] {
            switch self {
            case .count: ["0", "-1", "10000000000000", "99999999999999999999999", "inf", "nan", "garbage", "1.5"]
            case .seconds: ["0", "-1", "1e300", "1e16", "inf", "-inf", "nan", "garbage"]
            case .size:
                ["0", "-1", "100GiB", "2048GiB", "99999999999999999999GiB", "inf", "nan", "garbage", "1.5MiB"]
            case .address: ["127.0.0.1:99999", "127.0.0.1:-1", "garbage", ":", "127.0.0.1:nan", "127.0.0.1:0"]
            case .codec: ["zstd:999", "lz4:-1", "zstd:nan", "garbage"]
            }
        }
    }

    /// A flag, its kind, and the values of that kind it accepts (not hostile for it).
    struct Flag: Sendable {
        var name: String
        var kind: Kind
        var accepts: Set<String> = []
    }

    static let clusterFlags: [Flag] = [
        Flag(name: "--in-flight", kind: .count), Flag(name: "--max-attempts", kind: .count),
        Flag(name: "--combine", kind: .count), Flag(name: "--chaos", kind: .count, accepts: ["0"]),
        Flag(name: "--chaos-seed", kind: .count, accepts: ["0", "10000000000000"]),
        Flag(name: "--heartbeat-timeout", kind: .seconds), Flag(name: "--parcel-timeout", kind: .seconds),
        Flag(name: "--combine-delay", kind: .seconds, accepts: ["0"]), Flag(name: "--max-word-size", kind: .size),
        Flag(name: "--compression", kind: .codec), Flag(name: "--listen", kind: .address, accepts: ["127.0.0.1:0"]),
        Flag(name: "--min-workers", kind: .count),
    ]

    /// The arguments that make each command reach its checks, and its flags.
    static func cases(_ command: String, in directory: TemporaryDirectory) throws -> (base: [String], flags: [Flag]) {
        let file = try directory.file("words.txt", Array("a b c\n".utf8))
        switch command {
        case "count":
            return (
                ["count", "--workers", "127.0.0.1:1", "--cookie", "x", file],
                clusterFlags + [
                    Flag(name: "--threads", kind: .count), Flag(name: "--parcel-size", kind: .size),
                    Flag(name: "--top", kind: .count, accepts: ["10000000000000"]),
                ]
            )
        case "count-local":
            return (
                ["count", file],
                [
                    Flag(name: "--threads", kind: .count), Flag(name: "--parcel-size", kind: .size),
                    Flag(name: "--max-word-size", kind: .size), Flag(name: "--workers", kind: .address),
                ]
            )
        case "run":
            let cookie = try directory.file("cookie", Array("x".utf8))
            let config = try directory.file(
                "cluster.json",
                Array(
                    """
                    {"nodes": [{"name": "w", "address": "127.0.0.1:1", "role": "worker"}], "cookieFile": "\(cookie)"}
                    """.utf8))
            return (["run", "--config", config, file], clusterFlags + [Flag(name: "--parcel-size", kind: .size)])
        case "resume":
            return (
                ["resume", "--step-data", directory.path("steps")],
                clusterFlags + [
                    Flag(name: "--threads", kind: .count),
                    Flag(name: "--top", kind: .count, accepts: ["10000000000000"]),
                ]
            )
        case "worker":
            return (
                ["worker", "--listen", "127.0.0.1:0", "--cookie", "x", "--quiet"],
                [
                    Flag(name: "--threads", kind: .count), Flag(name: "--heartbeat-timeout", kind: .seconds),
                    Flag(name: "--join", kind: .address),
                ]
            )
        case "generate":
            return (
                ["generate", "--output", directory.path("generated.txt")],
                [
                    Flag(name: "--size", kind: .size, accepts: ["100GiB"]),
                    Flag(name: "--seed", kind: .count, accepts: ["0", "10000000000000"]),
                ]
            )
        default:
            return (
                ["example"],
                [
                    Flag(name: "--size", kind: .size), Flag(name: "--parcel-size", kind: .size),
                    Flag(name: "--compression", kind: .codec),
                    Flag(name: "--top", kind: .count, accepts: ["10000000000000"]),
                ]
            )
        }
    }

    @Test(arguments: ["count", "count-local", "run", "resume", "worker", "generate", "example"])
    func everyFlagRefusesHostileValues(_ command: String) throws {
        let directory = try TemporaryDirectory()
        let (base, flags) = try Self.cases(command, in: directory)
        var planned: [(flag: String, value: String, arguments: [String])] = []
        // Every hostile value of a flag's kind on `count` (the main command); elsewhere one value
        // per flag, rotating through the kinds' values, so every command meets every kind of value
        // while the test stays a few dozen process starts (the ranges themselves are checked in
        // one place, `configurationRangesRefuseEveryHostileValue` walks them all in-process).
        for (index, flag) in flags.enumerated() {
            let values = flag.kind.hostile.filter { !flag.accepts.contains($0) }
            let chosen = command == "count" && index % 3 == 0 ? values : [values[(index * 3 + 1) % values.count]]
            for value in chosen {
                // `--flag=value`: a value starting with '-' is then the flag's, not another flag.
                planned.append((flag.name, value, Array(base.prefix(1)) + ["\(flag.name)=\(value)"] + base.dropFirst()))
            }
        }
        let runs = planned
        let results = Locked<[Int: CommandResult]>([:])
        // Two at a time: each run is a short process start and refusal.
        DispatchQueue.concurrentPerform(iterations: 2) { lane in
            for index in stride(from: lane, to: runs.count, by: 2) {
                let result =
                    (try? CommandRunner.run(runs[index].arguments, timeout: 20))
                    ?? CommandResult(status: -1, stdout: [], stderr: "could not start")
                results.withLock { $0[index] = result }
            }
        }
        for (index, run) in runs.enumerated() {
            let result = results.withLock { $0[index] }!
            let label = "\(command) \(run.flag)=\(run.value)"
            #expect(!result.signalled, "\(label): killed by a signal (crash or hang)")
            #expect(result.status != 0, "\(label): accepted")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(label): \(result.stderr)")
            #expect(result.stderr.hasPrefix("elasticflow: error: "), "\(label): \(result.stderr)")
            // A bad address or codec is quoted with what it is; every other value names its flag.
            let named = result.stderr.contains(run.flag) || result.stderr.contains("'\(run.value)'")
            #expect(named, "\(label): the message does not name the flag: \(result.stderr)")
        }
    }

    /// Threads × parcel size beyond half the machine's memory is refused at once (each counting
    /// thread holds a parcel), on one node and for a master.
    @Test func threadsTimesParcelSizeMustFitMemory() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.file("words.txt", Array("a b c\n".utf8))
        for arguments in [
            ["count", "--threads", "1024", "--parcel-size", "128MiB", file],
            [
                "count", "--workers", "127.0.0.1:1", "--cookie", "x", "--threads", "1024", "--parcel-size", "128MiB",
                file,
            ],
        ] {
            let result = try CommandRunner.run(arguments, timeout: 20)
            #expect(result.status != 0 && !result.signalled, "\(result.stderr)")
            #expect(result.stderr.contains("half this machine's memory"), "\(result.stderr)")
        }
    }

    /// The same ranges in a cluster file (`run --config`), checked before any worker is contacted.
    @Test func clusterFileValuesAreRangeChecked() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.file("words.txt", Array("a b c\n".utf8))
        let cookie = try directory.file("cookie", Array("x".utf8))
        let values: [(key: String, json: String)] = [
            ("parcelSize", "\"100GiB\""), ("parcelSize", "\"0\""), ("inFlight", "10000000000000"), ("inFlight", "0"),
            ("heartbeatTimeout", "1e300"), ("heartbeatTimeout", "-1"), ("heartbeatInterval", "0"),
            ("heartbeatInterval", "1e16"), ("maxAttempts", "0"), ("maxAttempts", "100000"),
            ("parcelTimeout", "1e16"), ("parcelTimeout", "0"), ("chaos", "100"), ("chaos", "-1"), ("combine", "0"),
            ("combine", "100000"), ("combineDelay", "1e9"), ("combineDelay", "-1"), ("maxWordSize", "\"0\""),
            ("maxWordSize", "\"1GiB\""), ("inFlight", "\"garbage\""), ("heartbeatTimeout", "\"inf\""),
            ("minWorkers", "0"), ("minWorkers", "2"), ("minWorkers", "-1"),
        ]
        for (key, json) in values {
            let config = try directory.file(
                "cluster-\(key).json",
                Array(
                    """
                    {"nodes": [{"name": "w", "address": "127.0.0.1:1", "role": "worker"}],
                     "cookieFile": "\(cookie)", "\(key)": \(json)}
                    """.utf8))
            let result = try CommandRunner.run(["run", "--config", config, file], timeout: 20)
            #expect(!result.signalled && result.status != 0, "\(key)=\(json): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(key)=\(json): \(result.stderr)")
            #expect(result.stderr.contains(key), "\(key)=\(json): \(result.stderr)")
        }
    }

    /// A STEP asking a worker for more than it allows (chaos 100, say) is refused by the worker.
    @Test func aWorkerRefusesChaosOutOfRangeInASTEP() throws {
        let decoded = try? JSONDecoder().decode(
            StepAnnouncement.self,
            from: Data(
                #"{"step":1,"task":"wordcount","options":{},"compression":"none","chaos":{"percent":100,"seed":1},"maxAttempts":4}"#
                    .utf8))
        #expect(decoded == nil)
        var announcement = StepAnnouncement(
            step: 1, task: "wordcount", options: TaskOptions(), compression: "none", chaos: nil, maxAttempts: 0)
        #expect(throws: ElasticFlowError.self) { try announcement.validate() }
        announcement.maxAttempts = 4
        announcement.maxWordSize = 0
        #expect(throws: ElasticFlowError.self) { try announcement.validate() }
        announcement.maxWordSize = 1 << 20
        try announcement.validate()
    }

    /// Every hostile number against every numeric setting of the three configurations (the one
    /// place the CLI and the cluster file go through), in-process.
    @Test func configurationRangesRefuseEveryHostileValue() throws {
        let integers = [0, -1, 10_000_000_000_000, Int.max, Int.min]
        let seconds: [Double] = [0, -1, 1e300, 1e16, .infinity, -.infinity, .nan, .leastNonzeroMagnitude]
        let cluster = ClusterConfiguration(workers: [], cookie: try Cookie("x"))
        let integerFields: [(String, WritableKeyPath<ClusterConfiguration, Int>)] = [
            ("parcelSize", \.parcelSize), ("maxWordSize", \.maxWordSize), ("maxPayload", \.maxPayload),
            ("maxAttempts", \.maxAttempts), ("masterThreads", \.masterThreads),
            ("combine", \.combine.maxReceipts),
        ]
        for (name, field) in integerFields { Self.expectEachRefused(name, field, integers, in: cluster) }
        Self.expectEachRefused("inFlight", \.inFlight, integers.map(Optional.some), in: cluster)
        // Durations cannot be nan or infinite (flags and the cluster file, which give seconds, are
        // tested with those): the API's extremes instead.
        let durations: [Duration] = [.zero, .seconds(-1), .seconds(Int64.max), .seconds(Int64.min), .nanoseconds(1)]
        let secondFields: [(String, WritableKeyPath<ClusterConfiguration, Duration>)] = [
            ("heartbeatTimeout", \.heartbeatTimeout), ("heartbeatInterval", \.heartbeatInterval),
            ("connectTimeout", \.connectTimeout),
        ]
        for (name, field) in secondFields { Self.expectEachRefused(name, field, durations, in: cluster) }
        Self.expectEachRefused(
            "combineDelay", \.combine.maxDelay, [.seconds(-1), .seconds(61), .seconds(Int64.max)], in: cluster)
        Self.expectEachRefused("parcelTimeout", \.parcelTimeout, durations.map(Optional.some), in: cluster)
        for value in seconds {
            #expect(throws: ElasticFlowError.self, "\(value)") {
                _ = try Limits.duration(seconds: value, in: Limits.timeout, "a time-out")
            }
        }
        let worker = WorkerConfiguration(listen: NodeAddress(host: "127.0.0.1", port: 0), cookie: try Cookie("x"))
        for value in integers {
            var bad = worker
            bad.threads = value
            #expect(throws: ElasticFlowError.self) { try bad.validate() }
            var options = WordCountOptions()
            options.threads = value
            #expect(throws: ElasticFlowError.self) { try options.validate() }
            options = WordCountOptions()
            options.parcelSize = value
            #expect(throws: ElasticFlowError.self) { try options.validate() }
        }
        for value in durations {
            var bad = worker
            bad.heartbeatTimeout = value
            #expect(throws: ElasticFlowError.self) { try bad.validate() }
            bad = worker
            bad.handshakeTimeout = value
            #expect(throws: ElasticFlowError.self) { try bad.validate() }
        }
    }

    /// Each value set into `field` of `base` makes `validate()` throw.
    static func expectEachRefused<Value>(
        _ name: String, _ field: WritableKeyPath<ClusterConfiguration, Value>, _ values: [Value],
        in base: ClusterConfiguration
    ) {
        for value in values {
            var bad = base
            bad[keyPath: field] = value
            #expect(throws: ElasticFlowError.self, "\(name) = \(value)") { try bad.validate() }
        }
    }

    @Test func configurationsShareTheRanges() throws {
        var worker = WorkerConfiguration(listen: NodeAddress(host: "127.0.0.1", port: 0), cookie: try Cookie("x"))
        try worker.validate()
        for bad: Duration in [.seconds(Int64.max), .seconds(3601), .zero, .seconds(-1)] {
            worker.heartbeatTimeout = bad
            #expect(throws: ElasticFlowError.self) { try worker.validate() }
        }
        var options = WordCountOptions()
        try options.validate()
        options.parcelSize = 100 << 30
        #expect(throws: ElasticFlowError.self) { try options.validate() }
        #expect(throws: ElasticFlowError.self) { _ = try LocalWordCount.run([.file("/dev/null")], options: options) }
    }
}

/// A value guarded by a lock, for results gathered from several threads.
final class Locked<Value>: @unchecked Sendable {
    // Guarded by lock.
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) -> T) -> T { lock.withLock { body(&value) } }
}

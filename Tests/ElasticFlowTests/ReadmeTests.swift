import Testing

@testable import ElasticFlow

/// The README's Swift API example, run for real on one node (no workers), so it keeps compiling
/// and doing what it says.
@Suite struct ReadmeTests {
    @Test func theSwiftAPIExampleWorks() throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 50)
        let text = generator.generate(byteCount: 300_000)
        let path = try directory.file("big.txt", text)

        let (counter, stats) = try LocalWordCount.run([.file(path)], options: WordCountOptions(lowercase: true))
        #expect(counter.sorted(limit: 10).count == 10)
        #expect(stats.bytes == UInt64(text.count))

        var tasks = TaskRegistry.standard
        try tasks.register("line-count", FlowTask(Flow.lines.count()))
        try tasks.register(
            "longest",
            FlowTask(
                Flow.lines.reduce(into: "") { best, line in
                    if line.count > best.count { best = line }
                },
                aggregator: CustomAggregator(name: "longest") { acc, next in
                    (acc?.stringValue?.count ?? -1) >= (next.stringValue?.count ?? 0) ? acc! : next
                }))
        var configuration = ClusterConfiguration(workers: [], cookie: try Cookie("local"))
        configuration.compression = .lz4
        configuration.parcelSize = 32 << 10
        let master = Master(configuration: configuration, tasks: tasks)
        let events = EventStream()
        master.add(events)
        let report = try master.run(task: "line-count", sources: [.file(path)])
        let lines = text.split(separator: 0x0A, omittingEmptySubsequences: false).count - 1
        #expect(report.output.value == .int(Int64(lines)))
        events.finish()

        let rows = LineSource(name: "rows", lines: ["first record", "second record"])
        let fromApp = try master.run(task: "wordcount", sources: [.custom(rows)])
        guard case .wordCount(let appCounter) = fromApp.output else {
            Issue.record("no word count")
            return
        }
        #expect(try appCounter.rendered(format: .text) == Array("record 2\nfirst 1\nsecond 1\n".utf8))

        let queue = try StepQueue(master: master, stepData: directory.path("steps"), sources: SourceRegistry([rows]))
        let step = try queue.add(StepDefinition(name: "count", sources: [path], actionOnFailure: .cancelAndWait))
        let rowStep = try queue.add(StepDefinition(name: "rows", sources: ["rows"]))
        let longest = try queue.add(StepDefinition(name: "longest", task: "longest", sources: [path]))
        #expect(queue.run())
        #expect(queue.list().map(\.state) == [.completed, .completed, .completed])
        guard case .wordCount(let rowCounter) = queue.output(of: rowStep) else {
            Issue.record("no word count")
            return
        }
        #expect(rowCounter.sorted() == appCounter.sorted())
        guard case .wordCount(let stepCounter) = queue.output(of: step) else {
            Issue.record("no word count")
            return
        }
        #expect(try stepCounter.rendered(format: .text) == Reference.text(text, lowercase: false))
        let longestLine = text.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) }.max {
            $0.count < $1.count
        }
        #expect(queue.output(of: longest)?.value?.stringValue?.count == longestLine?.count)
    }
}

extension StepOutput {
    var value: FlowValue? {
        if case .value(let value) = self { return value }
        return nil
    }
}

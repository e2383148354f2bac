import ElasticFlowStatus
import Foundation
import Testing

@testable import ElasticFlow

/// The status board and its server's parts, in this process: a real step (a master and an
/// in-process worker on loopback) whose board equals its summary, two masters whose metrics do
/// not mix, peer text escaped in the JSON, a port in use refused with one line, and the bounded
/// event ring. The page, the HTTP side and the processes are tested end to end by
/// `Tests/status/test_status.py` (`make status-test`).
@Suite(.serialized) struct StatusBoardTests {
    @Test func aStepsBoardAndMetricsEqualItsSummary() async throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 91)
        let text = generator.generate(byteCount: 600_000)
        let path = try directory.file("t.txt", text)
        let cookie = try Cookie("status-board")
        let worker = try AsyncAPITests.inProcessWorker(cookie: cookie)
        let workerMetrics = StatusMetrics()
        let workerBoard = StatusBoard(role: "worker", name: "w", observer: workerMetrics)
        worker.statusBoard = workerBoard
        try worker.start()
        defer { worker.shutdown() }

        var configuration = ClusterConfiguration(workers: [worker.address], cookie: cookie)
        configuration.parcelSize = 32 << 10
        let metrics = StatusMetrics()
        let board = StatusBoard(role: "master", name: "master", observer: metrics)
        let master = Master(configuration: configuration)
        master.report(to: board)
        let report = try await master.run(task: "wordcount", sources: [.file(path)])
        let summary = report.summary

        let snapshot = board.snapshot()
        let step = try #require(snapshot.step)
        #expect(step.ended && step.state == "completed")
        #expect(step.parcelsDone == summary.receiptsClosed && step.parcelsCut == summary.parcels)
        #expect(step.bytesDone == UInt64(text.count) && step.bytesDone == summary.bytes)
        #expect(step.retries == summary.retries && step.duplicates == summary.duplicates)
        #expect(step.parcelsByNode == summary.parcelsByNode)
        #expect(step.bytesSentWire == summary.bytesSentWire && step.bytesReceivedWire == summary.bytesReceivedWire)
        #expect(snapshot.receipts == ReceiptCounts(open: 0, waiting: 0, closed: summary.receiptsClosed))
        let names = Set(snapshot.nodes.map(\.name))
        #expect(names.contains(worker.address.description))
        for node in snapshot.nodes {
            #expect(node.parcelsDone == summary.parcelsByNode[node.name, default: 0], "\(node.name)")
        }
        #expect(snapshot.nodes.map(\.duplicates).reduce(0, +) == summary.duplicates)
        #expect(snapshot.events.contains { $0.text.hasPrefix("step 1 running") })
        #expect(snapshot.events.last?.text == "step 1 completed")

        let text1 = String(decoding: metrics.render(snapshot), as: UTF8.self)
        #expect(text1.contains("elasticflow_parcels_done_total \(summary.receiptsClosed)\n"))
        #expect(text1.contains("elasticflow_bytes_done_total \(summary.bytes)\n"))
        #expect(text1.contains("elasticflow_task_duration_seconds_count \(summary.receiptsClosed)\n"))
        // A second scrape adds nothing: the counters are the board's totals, not a sum of scrapes.
        #expect(
            String(decoding: metrics.render(board.snapshot()), as: UTF8.self).contains(
                "elasticflow_parcels_done_total \(summary.receiptsClosed)\n"))

        // The worker's own board: the parcels it answered.
        let mine = summary.parcelsByNode[worker.address.description, default: 0]
        #expect(workerBoard.snapshot().worker?.parcelsDone == mine)
        let workerText = String(decoding: workerMetrics.render(workerBoard.snapshot()), as: UTF8.self)
        #expect(workerText.contains("elasticflow_worker_parcels_total \(mine)\n"))

        // A second master in the same process: its metrics are its own.
        let local = try StepQueueTests.localMaster(parcelSize: 64 << 10)
        let otherMetrics = StatusMetrics()
        let other = StatusBoard(role: "master", name: "other", observer: otherMetrics)
        local.report(to: other)
        let second = try await local.run(task: "wordcount", sources: [.file(path)])
        #expect(second.summary.receiptsClosed != summary.receiptsClosed)
        let text2 = String(decoding: otherMetrics.render(other.snapshot()), as: UTF8.self)
        #expect(text2.contains("elasticflow_parcels_done_total \(second.summary.receiptsClosed)\n"))
        #expect(
            String(decoding: metrics.render(board.snapshot()), as: UTF8.self).contains(
                "elasticflow_parcels_done_total \(summary.receiptsClosed)\n"))
    }

    @Test func autoCompressionChoicesShowOnTheBoardAndInMetrics() async throws {
        let directory = try TemporaryDirectory()
        var generator = CorpusGenerator(seed: 92)
        let path = try directory.file("t.txt", generator.generate(byteCount: 400_000))
        let cookie = try Cookie("status-auto")
        let worker = try AsyncAPITests.inProcessWorker(cookie: cookie)
        try worker.start()
        defer { worker.shutdown() }
        var configuration = ClusterConfiguration(workers: [worker.address], cookie: cookie)
        configuration.parcelSize = 32 << 10
        configuration.compression = .auto
        configuration.masterProcesses = false
        let metrics = StatusMetrics()
        let board = StatusBoard(role: "master", name: "master", observer: metrics)
        let master = Master(configuration: configuration)
        master.report(to: board)
        let report = try await master.run(task: "wordcount", sources: [.file(path)])

        // The board holds the codec in use on the link: the last choice the summary lists for it.
        let chosen = report.summary.compressionChoices.filter { $0.direction == .parcels }
        let last = try #require(chosen.last)
        let shown = board.snapshot().compression.filter { $0.direction == .parcels }
        #expect(shown == [last])
        let json = String(decoding: try JSONEncoder().encode(board.snapshot()), as: UTF8.self)
        #expect(json.contains(#""compression":[{"#))
        let text = String(decoding: metrics.render(board.snapshot()), as: UTF8.self)
        #expect(
            text.contains(
                #"elasticflow_link_codec{node="\#(last.node)",direction="parcels",codec="\#(last.codec)"} 1.0"#),
            "\(text)")

        // A fixed codec: nothing to show.
        configuration.compression = .lz4
        let fixedBoard = StatusBoard(role: "master", name: "master", observer: nil)
        let fixed = Master(configuration: configuration)
        fixed.report(to: fixedBoard)
        _ = try await fixed.run(task: "wordcount", sources: [.file(path)])
        #expect(fixedBoard.snapshot().compression.isEmpty)
    }

    @Test func aStepThatFailsEndsFailedOnTheBoard() async throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("t.txt", Array("a b c\n".utf8))
        // Nothing listens on port 1 of loopback: the connection is refused and the step fails.
        var configuration = ClusterConfiguration(
            workers: [NodeAddress(host: "127.0.0.1", port: 1)], cookie: try Cookie("x"))
        configuration.connectTimeout = .seconds(2)
        let board = StatusBoard(role: "master", name: "master")
        let master = Master(configuration: configuration)
        master.report(to: board)
        let failed = try? await master.run(task: "wordcount", sources: [.file(path)])
        #expect(failed == nil)
        let step = try #require(board.snapshot().step)
        #expect(step.ended && step.state == "failed" && !step.detail.isEmpty)
        #expect(board.snapshot().totals.stepsFailed == 1)
    }

    @Test func peerTextIsEscapedInTheJSON() throws {
        let evil = "<script>alert(\"x\")</script> & </b>"
        let board = StatusBoard(role: "worker", name: evil)
        board.stepUpdated(step: 1, state: .nodeDown, detail: evil)
        let json = StatusRoutes.json(board.snapshot())
        let hasMarkup = json.contains { $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") || $0 == UInt8(ascii: "&") }
        #expect(!hasMarkup)
        let decoded = try JSONDecoder().decode(StatusSnapshot.self, from: Data(json))
        #expect(decoded.name == evil)
        #expect(decoded.events.last?.text == "step 1 node-down: \(evil)")
        let routes = StatusRoutes(board: board, metrics: nil)
        let served = try JSONDecoder().decode(
            StatusSnapshot.self, from: Data(routes.respond(method: "GET", uri: "/api/status?x=1").body))
        let same = served.events == decoded.events && served.name == evil
        #expect(same)
        #expect(routes.respond(method: "POST", uri: "/api/status").status == 405)
        #expect(routes.respond(method: "GET", uri: "/metrics").status == 404)
        #expect(routes.respond(method: "GET", uri: "/nothing").status == 404)
    }

    @Test func aPortInUseIsOneLine() throws {
        let board = StatusBoard(role: "master", name: "master")
        let routes = StatusRoutes(board: board, metrics: nil)
        let first = try StatusServer(address: NodeAddress(host: "127.0.0.1", port: 0), routes: routes)
        defer { first.shutdown() }
        #expect(first.address.port != 0)
        #expect {
            _ = try StatusServer(address: first.address, routes: routes)
        } throws: { error in
            "\(error)" == "cannot serve on \(first.address): address already in use"
        }
    }

    @Test func theEventRingKeepsTheLastStepUpdatesAndParcels() throws {
        let board = StatusBoard(role: "master", name: "master")
        for index in 0..<500 { board.stepUpdated(step: 1, state: .nodeUp, detail: "n\(index)") }
        let receipt = Receipt(step: 1, sequence: 1, partition: 0, offset: 0, length: 1, items: 1, checksum: 0)
        for _ in 0..<500 { board.taskCompleted(receipt, on: "master", seconds: 0.001) }
        let events = board.snapshot().events
        #expect(events.count == StatusBoard.eventLimit)
        let updates = events.filter { $0.text.hasPrefix("step 1 node-up") }
        #expect(updates.count == StatusBoard.eventLimit - StatusBoard.parcelEventLimit)
        #expect(updates.last?.text == "step 1 node-up: n499")
        #expect(updates.first?.text == "step 1 node-up: n\(500 - updates.count)")
    }
}

import CoreMetrics
import ElasticFlow
import Prometheus
import Synchronization

/// `/metrics`: a board's figures as Prometheus text, through swift-metrics (counters, gauges and
/// timers made with an explicit factory) backed by swift-prometheus. Each exporter has a
/// `PrometheusCollectorRegistry` of its own and never calls `MetricsSystem.bootstrap`, so several
/// masters and workers in one process never mix their figures.
///
/// Counters are brought up to the board's totals at each scrape (the board counts; a scrape adds
/// what it counted since the last one), so they equal the step summary's figures once a step has
/// ended. Durations (task and merge histograms) are recorded as they happen, as the board's
/// `DurationObserver`.
public final class StatusMetrics: DurationObserver, Sendable {
    /// The registry the text is rendered from.
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let taskDuration: CoreMetrics.Timer
    private let mergeDuration: CoreMetrics.Timer
    /// Counter values already added to the registry, by name and labels; guarded by its mutex.
    private let exported = Mutex<[String: Int64]>([:])
    /// Every (node, direction, codec) the codec gauge has shown, so a codec no longer in use drops
    /// to 0; guarded by its mutex.
    private let codecsShown = Mutex<Set<[String]>>([])

    /// An exporter with a registry of its own.
    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let buckets: [Duration] = [
            .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
            .seconds(5), .seconds(10), .seconds(30),
        ]
        factory.defaultDurationHistogramBuckets = buckets
        self.factory = factory
        taskDuration = CoreMetrics.Timer(label: "elasticflow_task_duration_seconds", dimensions: [], factory: factory)
        mergeDuration = CoreMetrics.Timer(label: "elasticflow_merge_duration_seconds", dimensions: [], factory: factory)
    }

    /// Records one task or merge duration in its histogram.
    public func observe(_ kind: DurationKind, seconds: Double) {
        let nanoseconds = Int64(max(0, min(seconds, 1e9)) * 1e9)
        switch kind {
        case .task: taskDuration.recordNanoseconds(nanoseconds)
        case .merge: mergeDuration.recordNanoseconds(nanoseconds)
        }
    }

    /// Brings the counters and gauges up to `snapshot`, then renders the registry as Prometheus text.
    public func render(_ snapshot: StatusSnapshot) -> [UInt8] {
        update(from: snapshot)
        return registry.emitToBuffer()
    }

    private func count(_ name: String, _ value: some BinaryInteger, _ labels: [(String, String)] = []) {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        let target = Int64(clamping: value)
        let delta = exported.withLock { seen -> Int64 in
            let previous = seen[key] ?? 0
            guard target > previous else { return 0 }
            seen[key] = target
            return target - previous
        }
        let counter = CoreMetrics.Counter(label: name, dimensions: labels, factory: factory)
        if delta > 0 { counter.increment(by: delta) } else { counter.increment(by: 0) }
    }

    private func gauge(_ name: String, _ value: Double, _ labels: [(String, String)] = []) {
        CoreMetrics.Gauge(label: name, dimensions: labels, factory: factory).record(value)
    }

    /// `--compression auto`'s choices: `elasticflow_link_codec{node,direction,codec}` is 1 for the
    /// codec in use on a link and 0 for one it used before; `elasticflow_link_bytes_per_second` is
    /// the link's throughput as measured when the codec was chosen (absent while unmeasured).
    private func updateCompression(from choices: [CompressionChoice]) {
        let current = Set(choices.map { [$0.node, $0.direction.rawValue, $0.codec] })
        let shown = codecsShown.withLock { shown in
            shown.formUnion(current)
            return shown
        }
        for key in shown.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            let labels = [("node", key[0]), ("direction", key[1]), ("codec", key[2])]
            gauge("elasticflow_link_codec", current.contains(key) ? 1 : 0, labels)
        }
        for choice in choices {
            guard let rate = choice.linkBytesPerSecond else { continue }
            let labels = [("node", choice.node), ("direction", choice.direction.rawValue)]
            gauge("elasticflow_link_bytes_per_second", rate, labels)
        }
    }

    private func update(from snapshot: StatusSnapshot) {
        if let worker = snapshot.worker {
            count("elasticflow_worker_parcels_total", worker.parcelsDone)
            count("elasticflow_worker_task_errors_total", worker.taskErrors)
            count("elasticflow_worker_bytes_received_total", worker.bytesIn)
            count("elasticflow_worker_bytes_sent_total", worker.bytesOut)
            gauge("elasticflow_worker_masters", Double(worker.masters))
            gauge("elasticflow_worker_parcels_in_flight", Double(worker.inFlight))
            return
        }
        let totals = snapshot.totals
        count("elasticflow_parcels_cut_total", totals.parcelsCut)
        count("elasticflow_parcels_done_total", totals.parcelsDone)
        count("elasticflow_bytes_done_total", totals.bytesDone)
        count("elasticflow_bytes_sent_total", totals.bytesSentWire)
        count("elasticflow_bytes_received_total", totals.bytesReceivedWire)
        count("elasticflow_retries_total", totals.retries)
        count("elasticflow_duplicates_total", totals.duplicates)
        count("elasticflow_task_errors_total", totals.taskErrors)
        count("elasticflow_steps_total", totals.stepsCompleted, [("outcome", "completed")])
        count("elasticflow_steps_total", totals.stepsFailed, [("outcome", "failed")])
        gauge("elasticflow_receipts", Double(snapshot.receipts.open), [("state", "open")])
        gauge("elasticflow_receipts", Double(snapshot.receipts.waiting), [("state", "waiting")])
        gauge("elasticflow_receipts", Double(snapshot.receipts.closed), [("state", "closed")])
        for state in ["up", "joined", "connecting", "suspected", "leaving", "excluded", "down"] {
            gauge("elasticflow_nodes", Double(snapshot.nodes.count { $0.state == state }), [("state", state)])
        }
        for node in snapshot.nodes {
            let labels = [("node", node.name)]
            gauge("elasticflow_node_open_receipts", Double(node.openReceipts), labels)
            gauge("elasticflow_node_retries", Double(node.retries), labels)
            gauge("elasticflow_node_duplicates", Double(node.duplicates), labels)
            gauge("elasticflow_node_parcels", Double(node.parcelsDone), labels)
            gauge("elasticflow_node_bytes_out", Double(node.bytesOut), labels)
            gauge("elasticflow_node_bytes_in", Double(node.bytesIn), labels)
        }
        updateCompression(from: snapshot.compression)
        if let step = snapshot.step {
            gauge("elasticflow_step", Double(step.number))
            gauge("elasticflow_step_bytes_per_second", step.bytesPerSecond)
            gauge("elasticflow_step_ended", step.ended ? 1 : 0)
        }
    }
}

import Foundation
import Logging

/// What to do with the rest of the queue when a step fails (as EMR's ActionOnFailure).
public enum FailureAction: String, Sendable, Codable, CaseIterable {
    /// Run the next steps anyway.
    case `continue` = "continue"
    /// Cancel every pending step and wait (the queue stops).
    case cancelAndWait = "cancel-and-wait"
}

/// A step to run: a registered task over sources.
public struct StepDefinition: Sendable, Codable, Hashable {
    /// A name for people (`elasticflow steps` shows it).
    public var name: String
    /// The registered name of the task every parcel runs (`wordcount` by default).
    public var task: String
    /// File paths (`-` is standard input, which cannot be resumed or retried).
    public var sources: [String]
    /// The task's options, sent to every node with the step.
    public var options: TaskOptions
    /// What happens to the rest of the queue when this step fails.
    public var actionOnFailure: FailureAction

    /// - Parameters:
    ///   - name: a name for people.
    ///   - task: a name registered in the master's `TaskRegistry`.
    ///   - sources: paths, `-`, or names registered in the queue's `SourceRegistry`.
    ///   - options: the task's options.
    ///   - actionOnFailure: what the queue does when this step fails.
    public init(
        name: String, task: String = "wordcount", sources: [String], options: TaskOptions = .init(),
        actionOnFailure: FailureAction = .continue
    ) {
        self.name = name
        self.task = task
        self.sources = sources
        self.options = options
        self.actionOnFailure = actionOnFailure
    }

    enum CodingKeys: String, CodingKey { case name, task, sources, options, actionOnFailure }

    /// Decodes with defaults: task "wordcount", no options, action "continue".
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        task = try container.decodeIfPresent(String.self, forKey: .task) ?? "wordcount"
        sources = try container.decode([String].self, forKey: .sources)
        options = try container.decodeIfPresent(TaskOptions.self, forKey: .options) ?? TaskOptions()
        actionOnFailure = try container.decodeIfPresent(FailureAction.self, forKey: .actionOnFailure) ?? .continue
    }
}

/// A step's state, timeline and failure, as the queue (or its journal) knows it.
public struct StepStatus: Sendable {
    /// The step's number in its queue or step-data directory.
    public var step: UInt32
    /// The definition's name.
    public var name: String
    /// The registered name of the step's task.
    public var task: String
    /// Where the step is.
    public var state: StepState
    /// The state changes so far, with their times, oldest first.
    public var timeline: [StepRecord.Event]
    /// Why the step failed (one line), when it did.
    public var failure: String?
    /// The summary of its last run in this process, if any.
    public var summary: StepSummary?
}

/// A queue of steps run one after another on a cluster (like EMR steps). With a step-data
/// directory every step is journaled (`StepJournal`), so a failed step can be retried and a step
/// interrupted by a crash resumed, each re-processing only the parcels never aggregated.
///
/// Thread-safe: `add`, `cancel`, `list` and `output` may be called while `run` runs elsewhere.
public final class StepQueue: @unchecked Sendable {
    // Guarded by `lock`: entries, running.
    private let lock = NSLock()
    private let master: Master
    /// The step-data directory every step is journaled in; nil: steps are not journaled (no resume
    /// or retry).
    public let stepData: String?
    /// The app's own sources, by the names the definitions give.
    private let sources: SourceRegistry
    /// This process's hold on the step-data directory, for the queue's lifetime.
    private let dataLock: StepDataLock?
    private var entries: [Entry] = []
    private var nextLocal: UInt32 = 1

    private final class Entry {
        let step: UInt32
        let definition: StepDefinition
        var state: StepState = .pending
        var timeline: [StepRecord.Event] = []
        var failure: String?
        var output: StepOutput?
        var summary: StepSummary?
        var cancellation = CancellationFlag()
        init(step: UInt32, definition: StepDefinition) {
            self.step = step
            self.definition = definition
        }
    }

    /// A queue with no steps yet.
    /// - Parameters:
    ///   - master: runs every step of the queue.
    ///   - stepData: the directory the journal lives in (created if missing); nil: the queue lives
    ///     in memory only, and `retry` is not available.
    ///   - sources: the app's own sources, by name: a definition's source of that name reads it
    ///     (a journaled step needs them restartable).
    /// - Throws: `ElasticFlowError.journal` when another master process holds the directory
    ///   (`StepDataLock`), `.io` when it cannot be created.
    public init(master: Master, stepData: String? = nil, sources: SourceRegistry = .init()) throws(ElasticFlowError) {
        self.master = master
        self.stepData = stepData
        self.sources = sources
        dataLock = try stepData.map { (directory) throws(ElasticFlowError) in try StepDataLock(directory: directory) }
    }

    /// Queues a step; it runs after the steps queued before it.
    /// - Returns: its number.
    @discardableResult
    public func add(_ definition: StepDefinition) throws(ElasticFlowError) -> UInt32 {
        lock.lock()
        defer { lock.unlock() }
        var number = nextLocal
        if let stepData { number = max(number, try StepJournal.nextStepNumber(in: stepData)) }
        number = max(number, (entries.map(\.step).max() ?? 0) + 1)
        nextLocal = number + 1
        let entry = Entry(step: number, definition: definition)
        entry.timeline.append(.init(state: .pending, time: Date().timeIntervalSince1970, detail: ""))
        entries.append(entry)
        return number
    }

    /// Cancels a pending step (it will not run) or a running one (it stops and fails as cancelled).
    /// - Returns: false when the step is unknown or already finished.
    @discardableResult
    public func cancel(_ step: UInt32) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let entry = entries.first(where: { $0.step == step }) else { return false }
        switch entry.state {
        case .pending:
            set(entry, .cancelled, "cancelled before it ran")
            return true
        case .running:
            entry.cancellation.cancel()
            return true
        default:
            return false
        }
    }

    /// Every step of this queue, in order.
    public func list() -> [StepStatus] {
        lock.lock()
        defer { lock.unlock() }
        return entries.map {
            StepStatus(
                step: $0.step, name: $0.definition.name, task: $0.definition.task, state: $0.state,
                timeline: $0.timeline, failure: $0.failure, summary: $0.summary)
        }
    }

    /// A finished step's output.
    public func output(of step: UInt32) -> StepOutput? {
        lock.lock()
        defer { lock.unlock() }
        return entries.first { $0.step == step }?.output
    }

    /// Runs pending steps one after another until none is left.
    /// - Parameter progress: called about five times a second while a step runs.
    /// - Returns: true when every step that ran completed.
    @discardableResult
    public func run(progress: ((UInt32, StepProgress) -> Void)? = nil) -> Bool {
        var allCompleted = true
        while let entry = nextPending() {
            let outcome = runEntry(entry, resume: nil, progress: progress)
            if !outcome {
                allCompleted = false
                if entry.definition.actionOnFailure == .cancelAndWait {
                    lock.lock()
                    for other in entries where other.state == .pending {
                        set(
                            other, .cancelled, "step \(entry.step) failed (action on failure: cancel-and-wait)"
                        )
                    }
                    lock.unlock()
                }
            }
        }
        return allCompleted
    }

    private func nextPending() -> Entry? {
        lock.lock()
        defer { lock.unlock() }
        return entries.first { $0.state == .pending }
    }

    /// Re-runs a failed, cancelled or interrupted step from its journal: only the parcels whose
    /// receipts were never aggregated are sent again (`retryStep`).
    /// - Throws: `ElasticFlowError` when there is no journal or the step cannot be resumed.
    @discardableResult
    public func retryStep(_ step: UInt32, progress: ((UInt32, StepProgress) -> Void)? = nil) throws(ElasticFlowError)
        -> StepReport
    {
        guard let stepData else { throw .invalidArgument("retrying a step needs a step-data directory") }
        let (journal, definition) = try StepExecution.openUnfinished(step: step, in: stepData)
        let record = journal.record
        lock.lock()
        var entry = entries.first { $0.step == step }
        if entry == nil {
            entry = Entry(step: step, definition: definition)
            entries.append(entry!)
        }
        entry!.timeline = record.timeline
        lock.unlock()
        _ = runEntry(entry!, resume: journal, progress: progress)
        lock.lock()
        defer { lock.unlock() }
        if let summary = entry!.summary, entry!.state.isFinished, let output = entry!.output {
            return StepReport(output: output, summary: summary)
        }
        throw .cluster("step \(step) \(entry!.state): \(entry!.failure ?? "")")
    }

    // Under lock.
    private func set(_ entry: Entry, _ state: StepState, _ detail: String) {
        master.logger.debug(
            "step \(entry.step) \(entry.definition.name): \(state)\(detail.isEmpty ? "" : ": \(detail)")",
            metadata: ["step": "\(entry.step)", "state": "\(state)"])
        entry.state = state
        entry.timeline.append(.init(state: state, time: Date().timeIntervalSince1970, detail: detail))
        if state.isFailure {
            entry.failure = detail
        }
    }

    /// Runs one step (new, or resumed from `resume`), journaling when there is a step-data
    /// directory. Returns whether it completed.
    private func runEntry(_ entry: Entry, resume: StepJournal?, progress: ((UInt32, StepProgress) -> Void)?) -> Bool {
        lock.lock()
        entry.cancellation = CancellationFlag()  // a retry starts uncancelled
        let cancellation = entry.cancellation
        set(entry, .running, resume == nil ? "" : "resumed from the journal")
        lock.unlock()
        do throws(ElasticFlowError) {
            let report = try StepExecution.run(
                entry.definition, step: entry.step, master: master, stepData: stepData, sources: sources,
                resume: resume, cancellation: cancellation
            ) { progress?(entry.step, $0) }
            lock.lock()
            entry.output = report.output
            entry.summary = report.summary
            set(
                entry, report.summary.retries > 0 ? .completedWithRetries : .completed,
                "\(report.summary.receiptsClosed) receipts")
            lock.unlock()
            return true
        } catch {
            lock.lock()
            set(entry, cancellation.isCancelled ? .cancelled : .failed, error.description)
            lock.unlock()
            return false
        }
    }
}

/// Runs one step on a master, with its journal when there is a step-data directory.
public enum StepExecution {
    /// Checkpoints every this many aggregated receipts or seconds, whichever comes first.
    static let checkpointEvery = (receipts: 64, seconds: 1.0)

    /// - Parameters:
    ///   - sources: the app's own sources the definition may name.
    ///   - resume: an open journal of this step to resume (its aggregated receipts are skipped).
    static func run(
        _ definition: StepDefinition, step: UInt32, master: Master, stepData: String?, sources: SourceRegistry,
        resume: StepJournal?, cancellation: CancellationFlag?, progress: ((StepProgress) -> Void)?
    ) throws(ElasticFlowError) -> StepReport {
        var plan = StepPlan(
            step: step, task: definition.task,
            sources: try sources.resolve(definition.sources, journaled: stepData != nil || resume != nil),
            options: definition.options)
        if master.configuration.sharedInput, let custom = plan.sources.first(where: \.isCustom) {
            throw .invalidArgument(
                "--shared-input needs files every node can read; source '\(custom)' is the app's own and "
                    + "cannot be shared (copy mode sends it)")
        }
        var journal = resume
        if journal == nil, let stepData {
            var record = StepRecord(
                step: step, name: definition.name, task: definition.task, options: definition.options,
                sources: definition.sources, parcelSize: master.configuration.parcelSize,
                compression: master.configuration.compression.description)
            record.decompression = master.configuration.decompression.rawValue
            if master.configuration.sharedInput {
                record.sharedInput = true
                record.sourceFingerprints = try sharedFingerprints(definition.sources)
            }
            journal = try StepJournal.create(directory: stepData, record: record)
            master.logger.debug("step \(step): journal created in \(stepData)", metadata: ["step": "\(step)"])
        }
        if let journal {
            if resume != nil {
                let recovered = try journal.recovered()
                plan.alreadyAggregated = recovered.aggregated
                plan.restoredAggregate = recovered.aggregate
                master.logger.info(
                    "step \(step): \(recovered.aggregated.count) receipts recovered from the journal",
                    metadata: ["step": "\(step)"])
                guard journal.record.parcelSize == master.configuration.parcelSize else {
                    throw .journal(
                        "step \(step) was cut into \(journal.record.parcelSize)-byte parcels, not "
                            + "\(master.configuration.parcelSize): resume it with --parcel-size \(journal.record.parcelSize)"
                    )
                }
                let decompression = journal.record.inputDecompression
                guard decompression == master.configuration.decompression.rawValue else {
                    throw .journal(
                        "step \(step) read its files with --decompress \(decompression), not "
                            + "\(master.configuration.decompression): resume it with --decompress \(decompression)")
                }
                let shared = journal.record.sharedInput ?? false
                guard shared == master.configuration.sharedInput else {
                    throw .journal(
                        "step \(step) was cut "
                            + (shared
                                ? "in shared-input mode: resume it with --shared-input"
                                : "in copy mode: resume it without --shared-input"))
                }
                if shared, let then = journal.record.sourceFingerprints {
                    let now = try sharedFingerprints(definition.sources)
                    let changed = now.indices.first { index in index >= then.count || now[index] != then[index] }
                    if let index = changed {
                        throw .journal(
                            "step \(step): shared input '\(definition.sources[index])' changed since the step began "
                                + "(size \(index < then.count ? then[index].size : 0) -> \(now[index].size)"
                                + (index < then.count && then[index].modified != now[index].modified
                                    ? ", modification time changed" : "")
                                + "): it cannot be resumed")
                    }
                }
            }
            try journal.update(state: .running, detail: resume == nil ? "" : "resumed")
            plan.journal = JournalWriter(journal, logger: master.logger)
        }
        do {
            let report = try master.run(plan, progress: progress, cancellation: cancellation)
            if let journal {
                let result: [UInt8]
                switch report.output {
                case .wordCount(let counter): result = try counter.serialized()
                case .value(let value): result = value.encoded()
                }
                try journal.update { record in
                    record.retries += report.summary.retries
                    record.duplicates += report.summary.duplicates
                }
                try journal.complete(
                    result: result,
                    state: report.summary.retries > 0 ? .completedWithRetries : .completed)
            }
            return report
        } catch {
            if let journal {
                let state: StepState = cancellation?.isCancelled == true ? .cancelled : .failed
                try? journal.update(state: state, detail: error.description)
            }
            throw error
        }
    }

    /// Each shared source's size and modification time now.
    static func sharedFingerprints(_ sources: [String]) throws(ElasticFlowError) -> [SourceFingerprint] {
        var fingerprints: [SourceFingerprint] = []
        for source in sources { fingerprints.append(try SourceFingerprint.of(path: source)) }
        return fingerprints
    }

    /// Finds, in a step-data directory, the unfinished step that runs `definition` with this parcel
    /// size, mode and decompression (interrupted by a crash, failed or cancelled): running the same command again
    /// resumes it.
    public static func unfinishedStep(
        matching definition: StepDefinition, parcelSize: Int, sharedInput: Bool = false,
        decompression: Decompression = .auto, in stepData: String
    ) throws(ElasticFlowError) -> UInt32? {
        guard FileManager.default.fileExists(atPath: stepData) else { return nil }
        let candidates = try StepJournal.steps(in: stepData).filter { record in
            !record.state.isFinished && record.task == definition.task
                && record.options == definition.options
                && record.sources == definition.sources && record.parcelSize == parcelSize && record.isResumable
                && (record.sharedInput ?? false) == sharedInput
                && record.inputDecompression == decompression.rawValue
        }
        return candidates.last?.step
    }

    /// Opens an unfinished journaled step to run it again: the one check and set-up that
    /// `resume`, `retry`, `StepQueue.retryStep` and a repeated `count --step-data` all go through.
    /// A step found `running` is marked `interrupted` (we hold its lock, so its master is gone).
    /// - Throws: `ElasticFlowError` when the step has no journal or is already finished.
    static func openUnfinished(step: UInt32, in stepData: String) throws(ElasticFlowError)
        -> (journal: StepJournal, definition: StepDefinition)
    {
        let journal = try StepJournal.open(directory: stepData, step: step)
        let record = journal.record
        guard !record.state.isFinished else {
            throw .invalidArgument("step \(step) already \(record.state): nothing to resume")
        }
        if let change = record.definitionChange() {
            throw .journal("step \(step) cannot be resumed: '\(journal.path)/step.json': \(change)")
        }
        if record.state == .running {
            // We hold its lock, so the master that ran it is gone: it was interrupted.
            try journal.update(state: .interrupted, detail: "found running after its master stopped")
        }
        let definition = StepDefinition(
            name: record.name, task: record.task, sources: record.sources, options: record.options)
        return (journal, definition)
    }

    /// Resumes (or retries) a journaled step: only the parcels whose receipts were never aggregated
    /// are processed again, on top of the last checkpoint.
    /// - Parameters:
    ///   - step: the step's number in the directory.
    ///   - master: runs the rest of the step (its registry must hold the step's task).
    ///   - stepData: the step-data directory.
    ///   - sources: the app's own sources the step named when it began.
    ///   - cancellation: when set, stops the step cleanly (the journal keeps what was aggregated).
    ///   - progress: called about five times a second on the calling thread.
    /// - Returns: the finished step's output and summary.
    /// - Throws: `ElasticFlowError.journal` when the step is missing, finished, or its directory is
    ///   held by another master; the errors of `Master.run(task:sources:options:step:progress:)`.
    public static func resume(
        step: UInt32, master: Master, stepData: String, sources: SourceRegistry = .init(),
        cancellation: CancellationFlag? = nil, progress: ((StepProgress) -> Void)? = nil
    ) throws(ElasticFlowError) -> StepReport {
        let hold = try StepDataLock(directory: stepData)
        defer { withExtendedLifetime(hold) {} }
        let (journal, definition) = try openUnfinished(step: step, in: stepData)
        return try run(
            definition, step: step, master: master, stepData: stepData, sources: sources, resume: journal,
            cancellation: cancellation, progress: progress)
    }

    /// A finished step's output, rebuilt from its journaled result.
    public static func output(of step: UInt32, in stepData: String, tasks: TaskRegistry = .standard)
        throws(ElasticFlowError) -> StepOutput?
    {
        let journal = try StepJournal.open(directory: stepData, step: step)
        guard let bytes = try journal.result() else { return nil }
        let record = journal.record
        let task = try tasks.task(named: record.task)
        do {
            let aggregation = try task.makeAggregation(options: record.options)
            try aggregation.restore(from: bytes)
            return try aggregation.output()
        } catch let error as ElasticFlowError {
            throw error
        } catch {
            throw .journal("step \(step): its result cannot be read back: \(error)")
        }
    }
}

/// Connects a running step to its journal.
final class JournalWriter: StepJournalWriter {
    let journal: StepJournal
    let logger: Logger
    init(_ journal: StepJournal, logger: Logger) {
        self.journal = journal
        self.logger = logger
    }
    var checkpointEvery: (receipts: Int, seconds: Double) { StepExecution.checkpointEvery }
    func cut(_ receipt: Receipt) throws(ElasticFlowError) { try journal.recordReceipt(receipt) }
    func allCut() throws(ElasticFlowError) { try journal.sealReceipts() }
    func checkpoint(aggregated: Set<UInt64>, aggregate: [UInt8]) throws(ElasticFlowError) {
        try journal.checkpoint(aggregated: aggregated, aggregate: aggregate)
        logger.debug(
            "step \(journal.record.step): checkpoint of \(aggregated.count) aggregated receipts, \(aggregate.count) bytes",
            metadata: ["step": "\(journal.record.step)"])
    }
}

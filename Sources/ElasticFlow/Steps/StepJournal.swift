import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The durable record of one step in a step-data directory, so that `retry` re-sends exactly the parcels
/// whose receipts were never aggregated, and a master killed mid-step (even by SIGKILL or a power cut) can
/// restart and finish the step, re-processing only what its last checkpoint does not cover.
///
/// Layout of `<directory>/step-<N>/`:
/// - `step.json`: the `StepRecord` (JSON, sorted keys), replaced atomically on every change.
/// - `receipts.log`: one receipt per line in `Receipt`'s printable form, appended as parcels are cut.
///   Buffered; made durable by `checkpoint`, `sealReceipts` and `synchronize`.
/// - `checkpoint`: which receipts are aggregated and the aggregate's bytes (layout: `StepCheckpoint`).
/// - `result`: the final aggregate once the step completed.
///
/// Every replaced file is written as `NAME.tmp`, fsynced, renamed over `NAME`, and the directory fsynced.
/// A step directory is built as `step-<N>.tmp` and renamed into place, so `step-<N>` never exists half made.
///
/// Recovery (`recovered()`): the lines of receipts.log up to the length the checkpoint made durable must all
/// be valid, or the file is reported corrupt. Past that length the log holds what a crash may have torn (a
/// partial last line, or zeros after a power cut): reading stops at the first line that is not a valid
/// receipt, and the next append cuts the file back to the valid lines, so new receipts never land behind
/// garbage. Losing those lines is safe: none of them is aggregated in the checkpoint, and a resumed master
/// cuts the same sources again, which records them again (`recordReceipt` checks that the cut parcels still
/// match the recorded ones).
///
/// While open, a journal holds an exclusive `flock` on its step directory: a second master (or a second
/// journal on the same step) is refused instead of interleaving writes. The lock dies with the process.
///
/// Thread-safe: one lock guards the record and the receipt log, another serializes checkpoint and result
/// writes so a large checkpoint does not hold up `recordReceipt` for longer than the log's fsync.
public final class StepJournal: Sendable {
    /// The step's directory, `<directory>/step-<N>`.
    public let path: String
    /// The step number this journal records.
    public let step: UInt32
    /// Open for the journal's lifetime: `*at` calls, directory fsyncs and the `flock` go through it.
    private let directoryFD: Int32
    private let state: Mutex<State>
    /// Serializes writers of `checkpoint` and `result`; never taken while `state` is held.
    private let fileWriters = Mutex<Void>(())

    /// Receipts are written to the file once this many bytes are buffered.
    private static let flushThreshold = 64 * 1024
    private static let logName = "receipts.log"
    private static let recordName = "step.json"
    private static let checkpointName = "checkpoint"
    private static let resultName = "result"

    private struct State {
        var record: StepRecord
        /// Every receipt recorded (in receipts.log or `pending`); nil until first needed.
        var receipts: [UInt64: Receipt]?
        /// Bytes of receipts.log holding whole valid lines, plus what has been written since.
        var logLength = 0
        /// receipts.log opened for appending, or -1.
        var logFD: Int32 = -1
        /// Lines not yet written to receipts.log.
        var pending: [UInt8] = []
        /// Set when a write or fsync of receipts.log failed: what reached the disk is then unknown (Linux may
        /// drop the dirty pages), so no later checkpoint may claim the log durable.
        var logFailure: ElasticFlowError?
    }

    private init(path: String, step: UInt32, directoryFD: Int32, record: StepRecord) {
        self.path = path
        self.step = step
        self.directoryFD = directoryFD
        state = Mutex(State(record: record))
    }

    deinit {
        state.withLock { state in
            if state.logFD >= 0 {
                // Not fsynced: enough for a process exit; a power cut may lose these lines, which only
                // means a resumed master records them again.
                if state.logFailure == nil && !state.pending.isEmpty {
                    try? DurableFiles.writeAll(state.logFD, state.pending, path: logPath)
                }
                close(state.logFD)
            }
        }
        close(directoryFD)  // releases the flock
    }

    // MARK: Creating, opening, listing

    /// Creates the journal of a new step: `<directory>/step-<N>/` with step.json and an empty receipts.log.
    /// Creates `directory` (and its parents) when missing. The timeline gets a first event in the record's
    /// state when it is empty.
    /// - Parameters:
    ///   - directory: the step-data directory.
    ///   - record: the step; `record.step` names the directory (see `nextStepNumber(in:)`).
    /// - Returns: the open journal, holding the step's lock.
    /// - Throws: `ElasticFlowError.journal` when the step already exists, `.invalidArgument` for an invalid
    ///   record, `.io` when the directory cannot be created or written.
    public static func create(directory: String, record: StepRecord) throws(ElasticFlowError) -> StepJournal {
        guard !directory.isEmpty else { throw .invalidArgument("the step-data directory is an empty path") }
        if let problem = record.problem() { throw .invalidArgument("step \(record.step): \(problem)") }
        try DurableFiles.makeDirectories(directory)
        guard let parentFD = try DurableFiles.openDirectory(directory) else {
            throw .io(path: directory, operation: "open directory", errno: ENOENT)
        }
        defer { close(parentFD) }
        let name = directoryName(of: record.step)
        let finalPath = DurableFiles.join(directory, name)
        var info = stat()
        if fstatat(parentFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0 { throw alreadyExists(record.step, directory) }
        let temporaryName = name + ".tmp"
        let temporaryPath = DurableFiles.join(directory, temporaryName)
        try DurableFiles.removeFlatDirectory(temporaryPath)  // left by a create that crashed
        if mkdirat(parentFD, temporaryName, 0o755) != 0 {
            throw .io(path: temporaryPath, operation: "create directory", errno: errno)
        }
        guard let fd = try DurableFiles.openDirectory(temporaryPath) else {
            throw .io(path: temporaryPath, operation: "open directory", errno: ENOENT)
        }
        do throws(ElasticFlowError) {
            // Locked before the rename, so no other journal can open the step between rename and lock.
            try lock(fd, path: finalPath, step: record.step)
            var record = record
            if record.definitionDigest == nil { record.definitionDigest = record.computedDefinitionDigest() }
            if record.timeline.isEmpty {
                record.timeline.append(StepRecord.Event(state: record.state, time: now(), detail: "created"))
            }
            let logFD = openat(fd, logName, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if logFD < 0 {
                throw ElasticFlowError.io(
                    path: DurableFiles.join(temporaryPath, logName), operation: "create", errno: errno)
            }
            defer { close(logFD) }
            try DurableFiles.sync(logFD, path: DurableFiles.join(temporaryPath, logName))
            try write(record, in: fd, path: temporaryPath)
            if renameat(parentFD, temporaryName, parentFD, name) != 0 {
                if errno == EEXIST || errno == ENOTEMPTY { throw alreadyExists(record.step, directory) }
                throw ElasticFlowError.io(path: finalPath, operation: "create directory", errno: errno)
            }
            try DurableFiles.sync(parentFD, path: directory)
            return StepJournal(path: finalPath, step: record.step, directoryFD: fd, record: record)
        } catch {
            close(fd)
            try? DurableFiles.removeFlatDirectory(temporaryPath)
            throw error
        }
    }

    /// Opens the journal of an existing step (to resume or retry it, or to record its fate).
    /// - Returns: the open journal, holding the step's lock.
    /// - Throws: `ElasticFlowError.journal` when there is no such step, when it is open elsewhere, or when
    ///   its step.json is missing or corrupt; `.io` when the directory cannot be read.
    public static func open(directory: String, step: UInt32) throws(ElasticFlowError) -> StepJournal {
        let path = DurableFiles.join(directory, directoryName(of: step))
        guard let fd = try DurableFiles.openDirectory(path) else {
            throw .journal("no step \(step) in '\(directory)' (no directory '\(path)')")
        }
        do throws(ElasticFlowError) {
            try lock(fd, path: path, step: step)
            let record = try readRecord(in: fd, path: path, step: step)
            return StepJournal(path: path, step: step, directoryFD: fd, record: record)
        } catch {
            close(fd)
            throw error
        }
    }

    /// The records of every step in a step-data directory, by ascending step number. Reads only step.json
    /// files and takes no lock, so it also lists steps a running master has open.
    /// - Returns: an empty list when the directory does not exist.
    /// - Throws: `ElasticFlowError.journal` naming the first step.json that is missing or corrupt, `.io` when
    ///   the directory cannot be read.
    public static func steps(in directory: String) throws(ElasticFlowError) -> [StepRecord] {
        guard let names = try DurableFiles.names(in: directory) else { return [] }
        var records: [StepRecord] = []
        for name in names {
            guard let step = stepNumber(ofDirectory: name) else { continue }
            let path = DurableFiles.join(directory, name)
            guard let fd = try DurableFiles.openDirectory(path) else { continue }  // removed meanwhile
            defer { close(fd) }
            records.append(try readRecord(in: fd, path: path, step: step))
        }
        return records.sorted { $0.step < $1.step }
    }

    /// One more than the highest step number in the directory (1 for none, or no directory). Looks at
    /// directory names only, so a step with a corrupt step.json still holds its number.
    /// - Throws: `ElasticFlowError.io` when the directory cannot be read, `.invalidArgument` when step
    ///   numbers are exhausted.
    public static func nextStepNumber(in directory: String) throws(ElasticFlowError) -> UInt32 {
        let steps = (try DurableFiles.names(in: directory) ?? []).compactMap(stepNumber(ofDirectory:))
        guard let highest = steps.max() else { return 1 }
        guard highest < UInt32.max else { throw .invalidArgument("no step number left in '\(directory)'") }
        return highest + 1
    }

    // MARK: The record

    /// The step's record as last written.
    public var record: StepRecord { state.withLock { $0.record } }

    /// Moves the step to a state: appends to the timeline and rewrites step.json atomically. Entering
    /// failed, cancelled or interrupted sets `failure` to `detail`; any other state clears it.
    /// - Parameters:
    ///   - newState: the state to enter.
    ///   - detail: why, for people (an error message, "resumed", a node name).
    /// - Throws: `ElasticFlowError.io` when step.json cannot be written (the record is then unchanged).
    public func update(state newState: StepState, detail: String = "") throws(ElasticFlowError) {
        try state.withLock { (state: inout State) throws(ElasticFlowError) in
            var record = state.record
            record.timeline.append(StepRecord.Event(state: newState, time: Self.now(), detail: detail))
            record.state = newState
            record.failure = newState.isFailure ? detail : nil
            try Self.write(record, in: directoryFD, path: path)
            state.record = record
        }
    }

    /// Changes other fields of the record (counters such as `retries` and `duplicates`) and rewrites
    /// step.json atomically. Runs `change` under the journal's lock: it must not call the journal.
    /// - Throws: `ElasticFlowError.invalidArgument` when `change` touched the step number, state, timeline or
    ///   `receiptsSealed` (they have their own methods) or left an invalid record; `.io` when step.json cannot
    ///   be written (the record is then unchanged).
    public func update(_ change: (inout StepRecord) -> Void) throws(ElasticFlowError) {
        try state.withLock { (state: inout State) throws(ElasticFlowError) in
            var record = state.record
            change(&record)
            guard record.step == state.record.step, record.state == state.record.state,
                record.timeline == state.record.timeline, record.receiptsSealed == state.record.receiptsSealed,
                !record.receiptsSealed || record.parcels == state.record.parcels
            else {
                throw .invalidArgument(
                    "step \(step): change the state with update(state:detail:) and the parcels with sealReceipts()")
            }
            if let problem = record.problem() { throw .invalidArgument("step \(step): \(problem)") }
            try Self.write(record, in: directoryFD, path: path)
            state.record = record
        }
    }

    // MARK: Receipts

    /// Records the receipt of a parcel just cut. Buffered: `checkpoint`, `sealReceipts` or `synchronize`
    /// make it durable. Recording a receipt already in the journal does nothing, so a resumed master can cut
    /// the sources again from the start.
    /// - Throws: `ElasticFlowError.journal` when the journal holds a different receipt for the same parcel, or
    ///   none while the step's receipts are sealed (either way the sources changed since the step began and
    ///   resuming would give a wrong result); `.invalidArgument` for another step's receipt; `.io` when
    ///   receipts.log cannot be written.
    public func recordReceipt(_ receipt: Receipt) throws(ElasticFlowError) {
        guard receipt.step == step else {
            throw .invalidArgument("receipt \(receipt) belongs to step \(receipt.step), not \(step)")
        }
        try state.withLock { (state: inout State) throws(ElasticFlowError) in
            guard Int(receipt.partition) < state.record.sources.count else {
                throw .invalidArgument(
                    "receipt \(receipt) names source \(receipt.partition), but step \(step) has "
                        + "\(state.record.sources.count)")
            }
            try openLogForAppending(&state)
            if let known = state.receipts![receipt.sequence] {
                if known.isSameRange(as: receipt) { return }
                let source = PeerText.escaped(state.record.sources[Int(receipt.partition)])
                throw .journal(
                    "step \(step): parcel \(receipt.sequence) ('\(source)' from byte \(receipt.offset)) was cut as "
                        + "\(known) and is now cut as \(receipt): the sources changed since the step began, so it "
                        + "cannot be resumed")
            }
            if state.record.receiptsSealed {
                throw .journal(
                    "step \(step): parcel \(receipt.sequence) (\(receipt)) is not among the \(state.record.parcels)"
                        + " parcels cut when the step began: the sources changed, so it cannot be resumed")
            }
            state.receipts![receipt.sequence] = receipt
            state.pending.append(contentsOf: Self.logLine(receipt).utf8)
            state.pending.append(0x0A)
            if state.pending.count >= Self.flushThreshold { try flushLog(&state) }
        }
    }

    /// Declares that every parcel has been cut: makes receipts.log durable and records in step.json that it
    /// lists every parcel (`parcels` = their count, `receiptsSealed` = true). From then on a receipt for a
    /// new parcel is refused, and recovery treats a missing or torn line as corruption.
    /// - Throws: `ElasticFlowError.io` when receipts.log or step.json cannot be written; `.journal` when the
    ///   journal's files are corrupt.
    public func sealReceipts() throws(ElasticFlowError) {
        try state.withLock { (state: inout State) throws(ElasticFlowError) in
            try openLogForAppending(&state)
            try syncLog(&state)
            var record = state.record
            record.parcels = state.receipts!.count
            record.receiptsSealed = true
            try Self.write(record, in: directoryFD, path: path)
            state.record = record
        }
    }

    /// Writes buffered receipts and fsyncs receipts.log (as a checkpoint does, without writing one).
    /// - Throws: `ElasticFlowError.io` when receipts.log cannot be written.
    public func synchronize() throws(ElasticFlowError) {
        try state.withLock { (state: inout State) throws(ElasticFlowError) in
            if let failure = state.logFailure { throw Self.stopped(path, failure) }
            if state.logFD >= 0 { try syncLog(&state) }
        }
    }

    // MARK: Checkpoints and results

    /// Records which receipts are aggregated and the aggregate that results from them. First makes
    /// receipts.log durable (so every receipt the checkpoint names is on disk), then replaces the checkpoint
    /// atomically: written to checkpoint.tmp, fsynced, renamed, the directory fsynced.
    /// - Parameters:
    ///   - aggregated: sequence numbers of the receipts whose results `aggregate` holds.
    ///   - aggregate: the aggregation's serialized state.
    /// - Throws: `ElasticFlowError.invalidArgument` when a sequence number has no recorded receipt; `.io` when
    ///   a file cannot be written; `.journal` when the journal's files are corrupt.
    public func checkpoint(aggregated: Set<UInt64>, aggregate: [UInt8]) throws(ElasticFlowError) {
        let sequences = aggregated.sorted()
        try fileWriters.withLock { (_: inout Void) throws(ElasticFlowError) in
            let durableLength = try state.withLock { (state: inout State) throws(ElasticFlowError) -> Int in
                try openLogForAppending(&state)
                if let missing = sequences.first(where: { state.receipts![$0] == nil }) {
                    throw .invalidArgument(
                        "checkpoint of step \(step): parcel \(missing) is aggregated but its receipt was never recorded"
                    )
                }
                try syncLog(&state)
                return state.logLength
            }
            let checkpoint = StepCheckpoint(
                step: step, durableLogLength: UInt64(durableLength), aggregated: sequences, aggregate: aggregate)
            try DurableFiles.writeAtomically(
                checkpoint.encoded(), name: Self.checkpointName, in: directoryFD, directory: path)
        }
    }

    /// What the journal holds for resuming or retrying the step: every valid receipt recorded, the receipts
    /// aggregated at the last checkpoint and that checkpoint's aggregate. Parcels whose receipts are not in
    /// `aggregated` must be processed again (also the ones missing from `receipts`, when the step's receipts
    /// are not sealed: cut the sources again to find them).
    /// - Returns: `aggregate` is nil when no checkpoint was written (then `aggregated` is empty).
    /// - Throws: `ElasticFlowError.journal` naming the file when the checkpoint or the durable part of
    ///   receipts.log is corrupt or they disagree, or when the step read standard input; `.io` when a file
    ///   cannot be read.
    public func recovered() throws(ElasticFlowError) -> (
        receipts: [UInt64: Receipt], aggregated: Set<UInt64>, aggregate: [UInt8]?
    ) {
        try state.withLock { (state: inout State) throws(ElasticFlowError) in
            guard state.record.isResumable else {
                throw .journal(
                    "step \(step) read standard input, which cannot be read again: it cannot be resumed or retried")
            }
            if state.logFD >= 0 && state.logFailure == nil { try flushLog(&state) }
            let (checkpoint, receipts) = try readFiles(&state)
            return (receipts, Set(checkpoint?.aggregated ?? []), checkpoint?.aggregate)
        }
    }

    /// Stores the step's final aggregate in `result` (atomically, as a checkpoint) and then moves the step to
    /// its finished state. A crash between the two leaves a result and a running step: `result()` finds it.
    /// - Parameters:
    ///   - result: the final aggregate's bytes.
    ///   - newState: `.completed` or `.completedWithRetries` (a state that `isFinished`).
    ///   - detail: a line the timeline keeps with the new state (empty: none).
    /// - Throws: `ElasticFlowError.invalidArgument` for another state, `.io` when a file cannot be written.
    public func complete(
        result: [UInt8], state newState: StepState = .completed, detail: String = ""
    ) throws(ElasticFlowError) {
        guard newState.isFinished else {
            throw .invalidArgument(
                "a step completes as '\(StepState.completed)' or "
                    + "'\(StepState.completedWithRetries)', not '\(newState)'")
        }
        try fileWriters.withLock { (_: inout Void) throws(ElasticFlowError) in
            try DurableFiles.writeAtomically(
                StepResultFile.encode(step: step, result: result), name: Self.resultName, in: directoryFD,
                directory: path)
        }
        try update(state: newState, detail: detail)
    }

    /// The final aggregate stored by `complete`, or nil when the step has not completed.
    /// - Throws: `ElasticFlowError.journal` naming the file when it is corrupt, `.io` when it cannot be read.
    public func result() throws(ElasticFlowError) -> [UInt8]? {
        let filePath = DurableFiles.join(path, Self.resultName)
        guard let bytes = try DurableFiles.read(Self.resultName, in: directoryFD, path: filePath) else { return nil }
        return try StepResultFile.decode(bytes, path: filePath, step: step)
    }

    // MARK: Internals

    private var logPath: String { DurableFiles.join(path, Self.logName) }

    /// Reads the checkpoint and receipts.log and checks they agree; fills `state.receipts` the first time.
    private func readFiles(_ state: inout State) throws(ElasticFlowError) -> (StepCheckpoint?, [UInt64: Receipt]) {
        let checkpointPath = DurableFiles.join(path, Self.checkpointName)
        let checkpoint = try DurableFiles.read(Self.checkpointName, in: directoryFD, path: checkpointPath).map {
            (bytes) throws(ElasticFlowError) in try StepCheckpoint(decoding: bytes, path: checkpointPath, step: step)
        }
        let log = try DurableFiles.read(Self.logName, in: directoryFD, path: logPath) ?? []
        let sealed = state.record.receiptsSealed
        let durableLength = sealed ? log.count : Int(clamping: checkpoint?.durableLogLength ?? 0)
        if durableLength > log.count {
            throw JournalBytes.corrupt(
                logPath,
                "\(log.count) bytes, but the checkpoint was written after \(durableLength) bytes were"
                    + " synced: receipts were lost")
        }
        let scan = try Self.scan(
            log, durableLength: durableLength, step: step, sources: state.record.sources.count, path: logPath)
        if let checkpoint, let missing = checkpoint.aggregated.first(where: { scan.receipts[$0] == nil }) {
            throw JournalBytes.corrupt(
                checkpointPath, "it counts parcel \(missing) as aggregated, but receipts.log has no receipt for it")
        }
        if sealed && scan.receipts.count != state.record.parcels {
            throw JournalBytes.corrupt(
                logPath, "\(scan.receipts.count) receipts, but step.json says all \(state.record.parcels) were sealed")
        }
        if state.receipts == nil {
            state.receipts = scan.receipts
            state.logLength = scan.validLength
        }
        return (checkpoint, scan.receipts)
    }

    /// Makes receipts.log ready for appending: reads it once (and the checkpoint, to know what is durable),
    /// opens it, and cuts off a torn tail so new lines never follow garbage.
    private func openLogForAppending(_ state: inout State) throws(ElasticFlowError) {
        if let failure = state.logFailure { throw Self.stopped(path, failure) }
        if state.logFD >= 0 { return }
        if state.receipts == nil { _ = try readFiles(&state) }
        let fd = openat(directoryFD, Self.logName, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw .io(path: logPath, operation: "open", errno: errno) }
        var info = stat()
        if fstat(fd, &info) != 0 || Int(info.st_size) > state.logLength {
            if ftruncate(fd, off_t(state.logLength)) != 0 {
                let error = errno
                close(fd)
                throw .io(path: logPath, operation: "truncate", errno: error)
            }
        }
        state.logFD = fd
    }

    /// Writes the buffered lines (no fsync).
    private func flushLog(_ state: inout State) throws(ElasticFlowError) {
        guard !state.pending.isEmpty else { return }
        do throws(ElasticFlowError) {
            try DurableFiles.writeAll(state.logFD, state.pending, path: logPath)
        } catch {
            state.logFailure = error
            throw error
        }
        state.logLength += state.pending.count
        state.pending.removeAll(keepingCapacity: true)
    }

    /// Writes the buffered lines and fsyncs receipts.log.
    private func syncLog(_ state: inout State) throws(ElasticFlowError) {
        try flushLog(&state)
        do throws(ElasticFlowError) {
            try DurableFiles.sync(state.logFD, path: logPath)
        } catch {
            state.logFailure = error
            throw error
        }
    }

    /// A receipt as receipts.log stores it: its printable form, a space and the CRC32C of that form
    /// (8 hex digits), so an edited or flipped line is told from a parcel that now reads otherwise.
    static func logLine(_ receipt: Receipt) -> String {
        let text = receipt.description
        return text + " " + hex8(lineChecksum(text))
    }

    private static func lineChecksum(_ text: String) -> UInt32 {
        var copy = text
        return copy.withUTF8 { crc32c(UnsafeRawBufferPointer($0)) }
    }

    private static func hex8(_ value: UInt32) -> String {
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The receipt of one line of receipts.log: `RECEIPT CRC` (or a bare `RECEIPT`, as journals
    /// written before line checksums hold).
    /// - Returns: nil when the line is not a receipt; `checksumFailed` when its checksum disagrees.
    private static func parseLine(_ line: String) -> (receipt: Receipt?, checksumFailed: Bool) {
        var text = line
        if let space = line.lastIndex(of: " ") {
            text = String(line[..<space])
            let stored = line[line.index(after: space)...]
            // Exactly the digits logLine writes: `UInt32(_:radix:)` also takes "A-F" and a "+",
            // which would let an edited line pass (found by the receipts_log fuzz target).
            guard let value = UInt32(stored, radix: 16), hex8(value) == stored else { return (nil, false) }
            if value != lineChecksum(text) { return (nil, true) }
        }
        guard let receipt = Receipt(text), receipt.description == text else { return (nil, false) }
        return (receipt, false)
    }

    /// The receipts in receipts.log's bytes.
    /// - Parameter durableLength: bytes that were fsynced: every line starting before it must be valid.
    /// - Returns: the receipts and the length of the valid lines (reading stops at the first invalid line
    ///   after `durableLength`).
    static func scan(
        _ bytes: [UInt8], durableLength: Int, step: UInt32, sources: Int, path: String
    ) throws(ElasticFlowError) -> (receipts: [UInt64: Receipt], validLength: Int) {
        var receipts: [UInt64: Receipt] = [:]
        var start = 0
        var line = 0
        while start < bytes.count {
            line += 1
            let durable = start < durableLength
            guard let end = bytes[start...].firstIndex(of: 0x0A) else {
                if durable { throw JournalBytes.corrupt(path, "line \(line) (byte \(start)) is cut short") }
                break  // a line torn by a crash
            }
            let text = String(decoding: bytes[start..<end], as: UTF8.self)
            let parsed = parseLine(text)
            guard let receipt = parsed.receipt, receipt.step == step, Int(receipt.partition) < sources else {
                if durable {
                    throw JournalBytes.corrupt(
                        path,
                        parsed.checksumFailed
                            ? "line \(line) (byte \(start)) fails its checksum (edited or damaged): \(excerpt(text))"
                            : "line \(line) (byte \(start)) is not a receipt of step \(step): \(excerpt(text))")
                }
                break  // what a crash left past the synced length
            }
            if let earlier = receipts[receipt.sequence], earlier != receipt {
                throw JournalBytes.corrupt(
                    path,
                    "line \(line) (byte \(start)) has a second receipt for parcel \(receipt.sequence): \(earlier) and \(receipt)"
                )
            }
            receipts[receipt.sequence] = receipt
            start = end + 1
        }
        return (receipts, start)
    }

    /// A line quoted for a one-line error: at most 60 characters, control characters escaped.
    private static func excerpt(_ text: String) -> String { "'" + JournalBytes.oneLine(text, limit: 60) + "'" }

    static func directoryName(of step: UInt32) -> String { "step-\(step)" }

    /// The step number of a directory named `step-<N>` (canonical decimal), else nil.
    static func stepNumber(ofDirectory name: String) -> UInt32? {
        guard name.hasPrefix("step-"), let step = UInt32(name.dropFirst(5)), directoryName(of: step) == name
        else { return nil }
        return step
    }

    private static func stopped(_ path: String, _ failure: ElasticFlowError) -> ElasticFlowError {
        .journal("step journal '\(path)' stopped after an earlier receipts.log error: \(failure)")
    }

    private static func alreadyExists(_ step: UInt32, _ directory: String) -> ElasticFlowError {
        .journal("step \(step) already exists in '\(directory)'")
    }

    /// Takes the step's lock, waiting up to `lockPatience` seconds for it: a lock just released
    /// can still be held for a moment by a child process being spawned (its copy of the
    /// descriptor lives until its exec closes it), which must not read as another master.
    private static func lock(_ fd: Int32, path: String, step: UInt32) throws(ElasticFlowError) {
        let deadline = monotonicSeconds() + lockPatience
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK {
                if monotonicSeconds() < deadline {
                    usleep(10_000)
                    continue
                }
                throw .journal("step \(step) ('\(path)') is in use by another master or journal")
            }
            throw .io(path: path, operation: "lock", errno: errno)
        }
    }

    /// How long `lock` waits for a step's lock before it reports the step in use.
    static let lockPatience = 2.0

    private static func now() -> Double { Date().timeIntervalSince1970 }

    private static func write(_ record: StepRecord, in directoryFD: Int32, path: String) throws(ElasticFlowError) {
        try DurableFiles.writeAtomically(encodedRecord(record), name: recordName, in: directoryFD, directory: path)
    }

    /// step.json's bytes for a record: JSON with sorted keys, and a final newline.
    static func encodedRecord(_ record: StepRecord) throws(ElasticFlowError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            return Array(try encoder.encode(record)) + [0x0A]
        } catch {
            throw .invalidArgument("step \(record.step): cannot encode its record: \(error)")
        }
    }

    private static func readRecord(in directoryFD: Int32, path: String, step: UInt32) throws(ElasticFlowError)
        -> StepRecord
    {
        let filePath = DurableFiles.join(path, recordName)
        guard let bytes = try DurableFiles.read(recordName, in: directoryFD, path: filePath) else {
            throw .journal("step journal file '\(filePath)' is missing")
        }
        return try decodeRecord(bytes, path: filePath, step: step)
    }

    /// A step.json's bytes as a record, checked (also by the fuzz target `step_record`).
    /// - Throws: `ElasticFlowError.journal` naming the file and, in one line, what is wrong with it.
    static func decodeRecord(_ bytes: [UInt8], path filePath: String, step: UInt32) throws(ElasticFlowError)
        -> StepRecord
    {
        let record: StepRecord
        do {
            record = try JSONDecoder().decode(StepRecord.self, from: Data(bytes))
        } catch {
            throw JournalBytes.corrupt(filePath, reason(error))
        }
        if let problem = record.problem() { throw JournalBytes.corrupt(filePath, problem) }
        guard record.step == step else { throw JournalBytes.corrupt(filePath, "it describes step \(record.step)") }
        return record
    }

    /// A decoding error in one line: what is wrong and where.
    private static func reason(_ error: any Error) -> String {
        func location(_ path: [any CodingKey]) -> String {
            path.isEmpty
                ? "the top level"
                : "'"
                    + path.map { $0.intValue.map(String.init) ?? $0.stringValue }
                    .joined(separator: ".") + "'"
        }
        let text: String
        switch error as? DecodingError {
        case .dataCorrupted(let context)? where context.underlyingError is UnknownStepState:
            // "unknown state '...'", from StepState's decoder.
            let inTimeline = context.codingPath.first?.stringValue == "timeline"
            text = context.debugDescription + (inTimeline ? " in the timeline" : "")
        case .keyNotFound(let key, let context)?: text = "missing field \(location(context.codingPath + [key]))"
        case .typeMismatch(_, let context)?: text = "wrong type at \(location(context.codingPath))"
        case .valueNotFound(_, let context)?: text = "missing value at \(location(context.codingPath))"
        case .dataCorrupted(let context)?:
            text =
                context.codingPath.isEmpty
                ? "not valid JSON (truncated or damaged)" : "invalid value at \(location(context.codingPath))"
        default: text = "\(error)"
        }
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

import Foundation
import Synchronization
import Testing

@testable import ElasticFlow

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct StepJournalTests {
    func record(_ step: UInt32, sources: [String] = ["a.txt", "b.txt"]) -> StepRecord {
        StepRecord(
            step: step, name: "count \(step)", task: "wordcount",
            options: TaskOptions(lowercase: true, parameters: ["k": "v"]), sources: sources, parcelSize: 4096,
            compression: "zstd:3")
    }

    func receipt(_ sequence: UInt64, step: UInt32 = 1) -> Receipt {
        Receipt(
            step: step, sequence: sequence, partition: UInt32(sequence % 2), offset: sequence * 4096, length: 4096,
            items: 80 + sequence, checksum: UInt32(truncatingIfNeeded: sequence &* 2_654_435_761))
    }

    /// The error `body` throws, or nil (an error of another type is an issue).
    func failure(_ body: () throws -> Void) -> ElasticFlowError? {
        do {
            try body()
            return nil
        } catch let error as ElasticFlowError {
            return error
        } catch {
            Issue.record("not an ElasticFlowError: \(error)")
            return nil
        }
    }

    func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    func write(_ bytes: [UInt8], to path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    func append(_ text: String, to path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }

    /// A journal for step 1 with receipts 0..<count recorded and 0..<aggregatedCount checkpointed.
    func journalWithCheckpoint(_ directory: TemporaryDirectory, receipts count: UInt64, aggregated: UInt64) throws
        -> [UInt8]
    {
        let journal = try StepJournal.create(directory: directory.path("steps"), record: record(1))
        for sequence in 0..<count { try journal.recordReceipt(receipt(sequence)) }
        let aggregate = Array("aggregate of \(aggregated)".utf8)
        try journal.checkpoint(aggregated: Set(0..<aggregated), aggregate: aggregate)
        return aggregate
    }

    @Test func recoversWhatWasCheckpointedAfterReopening() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        let aggregate: [UInt8] = [0, 1, 2, 255, 0x0A, 7]
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            for sequence in 0..<50 as Range<UInt64> { try journal.recordReceipt(receipt(sequence)) }
            try journal.checkpoint(aggregated: [3, 1, 2, 40], aggregate: aggregate)
        }
        let journal = try StepJournal.open(directory: steps, step: 1)
        let recovered = try journal.recovered()
        #expect(recovered.receipts.count == 50)
        #expect(recovered.receipts.values.allSatisfy { $0 == receipt($0.sequence) })
        #expect(recovered.aggregated == [1, 2, 3, 40])
        #expect(recovered.aggregate == aggregate)
        #expect(journal.record.sources == ["a.txt", "b.txt"])
        #expect(journal.record.options == TaskOptions(lowercase: true, parameters: ["k": "v"]))
        #expect(journal.record.compression == "zstd:3" && journal.record.parcelSize == 4096)
        let lines = String(decoding: try bytes(journal.path + "/receipts.log"), as: UTF8.self)
            .split(separator: "\n")
        #expect(lines.first == "\(StepJournal.logLine(receipt(0)))")
        #expect(lines.first?.hasPrefix("1/0/0@0+4096:80#00000000 ") == true)
        #expect(lines.count == 50)
    }

    @Test func receiptsAndCheckpointsFromTwoThreads() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        let checkpointed = Atomic<Int>(0)
        let count = 3000
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            let recorded = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: 2) { thread in
                do {
                    if thread == 0 {  // the cutter
                        for sequence in 0..<count {
                            try journal.recordReceipt(receipt(UInt64(sequence)))
                            recorded.store(sequence + 1, ordering: .releasing)
                        }
                    } else {  // the aggregator: checkpoints whatever has been recorded so far
                        var done = 0
                        while done < count {
                            done = recorded.load(ordering: .acquiring)
                            try journal.checkpoint(aggregated: Set(0..<UInt64(done)), aggregate: Array("\(done)".utf8))
                            checkpointed.store(done, ordering: .relaxed)
                        }
                    }
                } catch {
                    Issue.record("thread \(thread): \(error)")
                    recorded.store(count, ordering: .releasing)  // lets the other thread finish
                }
            }
        }
        let reopened = try StepJournal.open(directory: steps, step: 1)
        let recovered = try reopened.recovered()
        #expect(recovered.receipts.count == count)
        #expect(recovered.aggregated == Set(0..<UInt64(count)))
        #expect(recovered.aggregate == Array("\(count)".utf8))
        #expect(checkpointed.load(ordering: .relaxed) == count)
    }

    @Test func anAbsentCheckpointMeansNothingIsAggregated() throws {
        let directory = try TemporaryDirectory()
        let journal = try StepJournal.create(directory: directory.path("steps"), record: record(1))
        try journal.recordReceipt(receipt(0))
        let recovered = try journal.recovered()
        #expect(recovered.aggregated.isEmpty)
        #expect(recovered.aggregate == nil)
        #expect(recovered.receipts == [0: receipt(0)])
    }

    @Test func aCrashAfterACheckpointLeavesTheCheckpointsAggregatedSet() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            for sequence in 0..<10 as Range<UInt64> { try journal.recordReceipt(receipt(sequence)) }
            try journal.checkpoint(aggregated: Set(0..<6), aggregate: [6])
            // Cut and aggregated after the checkpoint, then killed before the next one: the lines reached
            // the file (a SIGKILL keeps written pages), the last one only in part.
            for sequence in 10..<14 as Range<UInt64> { try journal.recordReceipt(receipt(sequence)) }
            try journal.synchronize()
        }
        try append("1/14/0@573", to: directory.path("steps/step-1/receipts.log"))
        let journal = try StepJournal.open(directory: steps, step: 1)
        let recovered = try journal.recovered()
        #expect(recovered.aggregated == Set(0..<6))
        #expect(recovered.aggregate == [6])
        #expect(recovered.receipts.keys.sorted() == Array(0..<14))
        // Resuming: the same sources are cut again; the journal holds each receipt once.
        for sequence in 0..<16 as Range<UInt64> { try journal.recordReceipt(receipt(sequence)) }
        try journal.checkpoint(aggregated: Set(0..<16), aggregate: [16])
        let lines = String(decoding: try bytes(journal.path + "/receipts.log"), as: UTF8.self)
        #expect(lines == (0..<16 as Range<UInt64>).map { "\(StepJournal.logLine(receipt($0)))\n" }.joined())
        #expect(try journal.recovered().aggregated == Set(0..<16))
    }

    static let childVariable = "ELASTICFLOW_JOURNAL_KILL_CHILD"

    /// Runs only in the process `aMasterKilledBySIGKILLResumesFromItsLastCheckpoint` starts: records 25
    /// receipts, checkpoints the first 10, and kills itself with receipts still buffered.
    @Test func journalChildKilledMidStep() throws {
        guard let steps = ProcessInfo.processInfo.environment[Self.childVariable] else { return }
        let journal = try StepJournal.create(directory: steps, record: record(1))
        try journal.update(state: .running, detail: "child")
        for sequence in 0..<20 as Range<UInt64> { try journal.recordReceipt(receipt(sequence)) }
        try journal.checkpoint(aggregated: Set(0..<10), aggregate: Array("10".utf8))
        for sequence in 20..<25 as Range<UInt64> { try journal.recordReceipt(receipt(sequence)) }
        kill(getpid(), SIGKILL)
    }

    @Test func aMasterKilledBySIGKILLResumesFromItsLastCheckpoint() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        var executable = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &executable, executable.count - 1)
        try #require(length > 0)
        let child = Process()
        child.executableURL = URL(
            fileURLWithPath: String(decoding: executable.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        child.arguments = [
            "--testing-library", "swift-testing", "--filter", "StepJournalTests/journalChildKilledMidStep",
        ]
        child.environment = ProcessInfo.processInfo.environment.merging([Self.childVariable: steps]) { $1 }
        child.standardOutput = FileHandle.nullDevice
        child.standardError = FileHandle.nullDevice
        try child.run()
        child.waitUntilExit()
        #expect(child.terminationReason == .uncaughtSignal && child.terminationStatus == SIGKILL)

        // The kernel released the dead master's lock; a new master resumes the step.
        let journal = try StepJournal.open(directory: steps, step: 1)
        #expect(journal.record.state == .running)
        try journal.update(state: .interrupted, detail: "found running after a restart")
        let recovered = try journal.recovered()
        #expect(recovered.aggregated == Set(0..<10))
        #expect(recovered.aggregate == Array("10".utf8))
        #expect(Set(0..<20).isSubset(of: recovered.receipts.keys))  // made durable by the checkpoint
        // Cut again from the start, aggregate what the checkpoint lacks, finish.
        try journal.update(state: .running, detail: "resumed")
        for sequence in 0..<25 as Range<UInt64> { try journal.recordReceipt(receipt(sequence)) }
        let missing = (0..<25 as Range<UInt64>).filter { !recovered.aggregated.contains($0) }
        #expect(missing == Array(10..<25))
        try journal.checkpoint(aggregated: recovered.aggregated.union(missing), aggregate: Array("25".utf8))
        try journal.complete(result: Array("25".utf8))
        #expect(try journal.recovered().receipts.count == 25)
        #expect(try journal.result() == Array("25".utf8))
        #expect(journal.record.timeline.map(\.state) == [.pending, .running, .interrupted, .running, .completed])
    }

    @Test func aTornLastLineIsIgnoredAndCutOffBeforeTheNextAppend() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            try journal.recordReceipt(receipt(0))
            try journal.recordReceipt(receipt(1))
        }
        let log = directory.path("steps/step-1/receipts.log")
        try append("1/2/0@8192+40", to: log)
        do {
            let journal = try StepJournal.open(directory: steps, step: 1)
            #expect(try journal.recovered().receipts.keys.sorted() == [0, 1])
            try journal.recordReceipt(receipt(2))
        }
        let journal = try StepJournal.open(directory: steps, step: 1)
        #expect(try journal.recovered().receipts.keys.sorted() == [0, 1, 2])
        #expect(String(decoding: try bytes(log), as: UTF8.self).split(separator: "\n").count == 3)
    }

    @Test func zerosAPowerCutLeftPastTheSyncedLengthAreIgnored() throws {
        let directory = try TemporaryDirectory()
        _ = try journalWithCheckpoint(directory, receipts: 4, aggregated: 4)
        let log = directory.path("steps/step-1/receipts.log")
        try write(try bytes(log) + [UInt8](repeating: 0, count: 300) + Array("\n1/9/1@0+1:1#00000000\n".utf8), to: log)
        let journal = try StepJournal.open(directory: directory.path("steps"), step: 1)
        #expect(try journal.recovered().receipts.keys.sorted() == [0, 1, 2, 3])
    }

    @Test func aMalformedLineInTheSyncedPartIsCorruption() throws {
        let directory = try TemporaryDirectory()
        _ = try journalWithCheckpoint(directory, receipts: 4, aggregated: 2)
        let log = directory.path("steps/step-1/receipts.log")
        var text = try bytes(log)
        text[text.firstIndex(of: 0x0A)! + 3] = UInt8(ascii: "x")  // inside line 2
        try write(text, to: log)
        let journal = try StepJournal.open(directory: directory.path("steps"), step: 1)
        let error = failure { _ = try journal.recovered() }
        #expect(error?.description.contains(log) == true)
        #expect(error?.description.contains("line 2") == true)
        #expect(failure { try journal.recordReceipt(receipt(9)) } != nil)
    }

    /// A synced receipts.log line edited into another well-formed receipt is reported as a
    /// corrupt receipts.log (its line checksum), never as "the sources changed".
    @Test func anEditedReceiptLineIsCorruptionNotAChangedSource() throws {
        let directory = try TemporaryDirectory()
        _ = try journalWithCheckpoint(directory, receipts: 4, aggregated: 2)
        let log = directory.path("steps/step-1/receipts.log")
        var text = String(decoding: try bytes(log), as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines[2].hasPrefix("1/2/0@8192+4096:82#"))
        text = text.replacingOccurrences(of: "1/2/0@8192+4096:82#", with: "1/2/0@8192+4096:83#")
        try write(Array(text.utf8), to: log)
        let journal = try StepJournal.open(directory: directory.path("steps"), step: 1)
        let error = failure { _ = try journal.recovered() }
        let message = error?.description ?? ""
        #expect(message.hasPrefix("corrupt step journal file '\(log)': line 3 (byte "), "\(message)")
        #expect(message.contains("checksum") && !message.contains("sources changed"), "\(message)")
    }

    /// Found by the receipts_log fuzz target: a line's checksum in capitals (or with a "+") passed,
    /// so an edited line read as written. Only the lowercase digits the journal writes pass.
    @Test func aChecksumSpelledOtherwiseIsNotTheLineTheJournalWrote() throws {
        // A receipt whose line checksum has a letter in it, so a capital spells the same value.
        let receipt = try #require(
            (0..<64 as Range<UInt64>).lazy.map {
                Receipt(step: 1, sequence: 0, partition: 0, offset: $0, length: 9, items: 1, checksum: 0xABCD)
            }.first { StepJournal.logLine($0).split(separator: " ").last!.contains { "abcdef".contains($0) } })
        let line = StepJournal.logLine(receipt)
        let head = line[..<line.lastIndex(of: " ")!]
        let digits = line[line.index(after: line.lastIndex(of: " ")!)...]
        let value = UInt32(digits, radix: 16)!
        // In capitals; with a sign when the first digit is a 0 it can take the place of.
        let spellings = [digits.uppercased(), "+" + String(digits.dropFirst())].filter {
            $0 != String(digits) && UInt32($0, radix: 16) == value
        }
        #expect(!spellings.isEmpty)
        for spelling in spellings {
            let bytes = Array((head + " " + spelling + "\n").utf8)
            #expect(throws: ElasticFlowError.self, "\(spelling)") {
                _ = try StepJournal.scan(bytes, durableLength: bytes.count, step: 1, sources: 1, path: "receipts.log")
            }
            let tail = try StepJournal.scan(bytes, durableLength: 0, step: 1, sources: 1, path: "receipts.log")
            #expect(tail.validLength == 0 && tail.receipts.isEmpty)
        }
        let written = Array((line + "\n").utf8)
        #expect(
            try StepJournal.scan(written, durableLength: written.count, step: 1, sources: 1, path: "l").receipts[0]
                == receipt)
    }

    /// Journals written before line checksums (bare receipts) still read.
    @Test func linesWithoutAChecksumStillRead() throws {
        let directory = try TemporaryDirectory()
        _ = try journalWithCheckpoint(directory, receipts: 3, aggregated: 3)
        let log = directory.path("steps/step-1/receipts.log")
        let bare = String(decoding: try bytes(log), as: UTF8.self).split(separator: "\n")
            .map { $0.split(separator: " ")[0] + "\n" }.joined()
        try write(Array(bare.utf8), to: log)
        // The checkpoint's durable length was the long lines'.
        try FileManager.default.removeItem(atPath: directory.path("steps/step-1/checkpoint"))
        let journal = try StepJournal.open(directory: directory.path("steps"), step: 1)
        #expect(try journal.recovered().receipts.keys.sorted() == [0, 1, 2])
    }

    /// Options edited in step.json (case folding, say) make `resume` refuse, naming step.json,
    /// instead of finishing the step with two foldings mixed.
    @Test func anEditedDefinitionIsRefusedOnResume() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            try journal.update(state: .failed, detail: "a worker failed")
            #expect(journal.record.definitionDigest == journal.record.computedDefinitionDigest())
        }
        let path = directory.path("steps/step-1/step.json")
        let edited = String(decoding: try bytes(path), as: UTF8.self)
            .replacingOccurrences(of: "\"lowercase\" : true", with: "\"lowercase\" : false")
        #expect(edited != String(decoding: try bytes(path), as: UTF8.self))
        try write(Array(edited.utf8), to: path)
        let error = failure { _ = try StepExecution.openUnfinished(step: 1, in: steps) }
        let message = error?.description ?? ""
        #expect(message.contains(path) && message.contains("edited"), "\(message)")
        #expect(!message.contains("\n"))
    }

    @Test func aLogShorterThanItsCheckpointIsCorruption() throws {
        let directory = try TemporaryDirectory()
        _ = try journalWithCheckpoint(directory, receipts: 4, aggregated: 4)
        let log = directory.path("steps/step-1/receipts.log")
        try write(Array(try bytes(log).dropLast(30)), to: log)
        let journal = try StepJournal.open(directory: directory.path("steps"), step: 1)
        let error = failure { _ = try journal.recovered() }
        #expect(error?.description.contains("receipts were lost") == true)
    }

    @Test func everyFlippedByteOfTheCheckpointIsDetected() throws {
        let directory = try TemporaryDirectory()
        _ = try journalWithCheckpoint(directory, receipts: 5, aggregated: 3)
        let path = directory.path("steps/step-1/checkpoint")
        let original = try bytes(path)
        #expect(original.count == 36 + 3 * 8 + "aggregate of 3".utf8.count + 4)
        #expect(Array(original.prefix(4)) == Array("EFCK".utf8))
        let journal = try StepJournal.open(directory: directory.path("steps"), step: 1)
        for index in original.indices {
            var damaged = original
            damaged[index] ^= 0x10
            try write(damaged, to: path)
            let error = failure { _ = try journal.recovered() }
            guard case .journal(let message)? = error else {
                Issue.record("flipping byte \(index) gave \(String(describing: error))")
                continue
            }
            #expect(message.contains(path) && !message.contains("\n"))
        }
        try write(original, to: path)
        #expect(try journal.recovered().aggregated == [0, 1, 2])
    }

    @Test func everyTruncationOfTheCheckpointIsDetected() throws {
        let directory = try TemporaryDirectory()
        _ = try journalWithCheckpoint(directory, receipts: 3, aggregated: 2)
        let path = directory.path("steps/step-1/checkpoint")
        let original = try bytes(path)
        let journal = try StepJournal.open(directory: directory.path("steps"), step: 1)
        for length in 0..<original.count {
            try write(Array(original.prefix(length)), to: path)
            let error = failure { _ = try journal.recovered() }
            #expect(error?.description.hasPrefix("corrupt step journal file '\(path)'") == true)
        }
    }

    @Test func aCheckpointMayOnlyNameRecordedReceipts() throws {
        let directory = try TemporaryDirectory()
        let journal = try StepJournal.create(directory: directory.path("steps"), record: record(1))
        try journal.recordReceipt(receipt(0))
        let error = failure { try journal.checkpoint(aggregated: [0, 7], aggregate: []) }
        #expect(error?.description.contains("parcel 7") == true)
        #expect(failure { try journal.recordReceipt(receipt(0, step: 2)) } != nil)
    }

    @Test func timelineAndCountersPersist() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            #expect(journal.record.timeline.map(\.state) == [.pending])
            try journal.update(state: .running, detail: "3 nodes")
            try journal.update(state: .failed, detail: "node b went down")
            #expect(journal.record.failure == "node b went down")
            try journal.update {
                $0.retries = 4
                $0.duplicates = 1
            }
            #expect(failure { try journal.update { $0.state = .completed } } != nil)
            #expect(journal.record.state == .failed)
        }
        let journal = try StepJournal.open(directory: steps, step: 1)
        let record = journal.record
        #expect(record.timeline.map(\.state) == [.pending, .running, .failed])
        #expect(record.timeline.map(\.detail) == ["created", "3 nodes", "node b went down"])
        #expect(record.timeline.allSatisfy { abs($0.time - Date().timeIntervalSince1970) < 600 })
        #expect(record.state == .failed && record.failure == "node b went down")
        #expect(record.retries == 4 && record.duplicates == 1)
        try journal.update(state: .running, detail: "retry")
        #expect(journal.record.failure == nil)
        #expect(try StepJournal.steps(in: steps) == [journal.record])
    }

    @Test func stepsAreListedByNumberAndTheNextNumberFollowsTheHighest() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        #expect(try StepJournal.steps(in: steps).isEmpty)
        #expect(try StepJournal.nextStepNumber(in: steps) == 1)
        for step: UInt32 in [10, 2, 3] { _ = try StepJournal.create(directory: steps, record: record(step)) }
        try FileManager.default.createDirectory(atPath: steps + "/step-07x", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: steps + "/step-4.tmp", withIntermediateDirectories: true)
        _ = try directory.file("steps/notes.txt", Array("hello".utf8))
        #expect(try StepJournal.steps(in: steps).map(\.step) == [2, 3, 10])
        #expect(try StepJournal.steps(in: steps).map(\.name) == ["count 2", "count 3", "count 10"])
        #expect(try StepJournal.nextStepNumber(in: steps) == 11)
    }

    @Test func creatingAnExistingStepFails() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        let journal = try StepJournal.create(directory: steps, record: record(1))
        try journal.recordReceipt(receipt(0))
        try journal.synchronize()
        let error = failure { _ = try StepJournal.create(directory: steps, record: record(1)) }
        #expect(error == .journal("step 1 already exists in '\(steps)'"))
        #expect(try journal.recovered().receipts.count == 1)
        #expect(!FileManager.default.fileExists(atPath: steps + "/step-1.tmp"))
    }

    @Test func aCreateInterruptedByACrashLeavesNoStepBehind() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        try FileManager.default.createDirectory(atPath: steps + "/step-1.tmp", withIntermediateDirectories: true)
        _ = try directory.file("steps/step-1.tmp/step.json.tmp", Array("{\"st".utf8))
        #expect(try StepJournal.steps(in: steps).isEmpty)
        #expect(try StepJournal.nextStepNumber(in: steps) == 1)
        let journal = try StepJournal.create(directory: steps, record: record(1))
        #expect(try FileManager.default.contentsOfDirectory(atPath: steps) == ["step-1"])
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: journal.path).sorted() == ["receipts.log", "step.json"])
        let error = failure {
            try journal.recordReceipt(
                Receipt(
                    step: 1, sequence: 0, partition: 2, offset: 0,
                    length: 1, items: 1, checksum: 0))
        }
        #expect(error?.description.contains("names source 2") == true)
    }

    @Test func aStepOpenElsewhereIsRefused() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            let error = failure { _ = try StepJournal.open(directory: steps, step: 1) }
            #expect(error?.description.contains("is in use") == true)
            withExtendedLifetime(journal) {}
        }
        #expect(failure { _ = try StepJournal.open(directory: steps, step: 1) } == nil)
        let missing = failure { _ = try StepJournal.open(directory: steps, step: 2) }
        #expect(missing?.description.contains("no step 2") == true)
    }

    @Test func completeStoresTheResult() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        let result = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 31) }
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            #expect(try journal.result() == nil)
            #expect(failure { try journal.complete(result: result, state: .failed) } != nil)
            try journal.update(state: .running)
            try journal.complete(result: result, state: .completedWithRetries, detail: "2 retries")
        }
        let journal = try StepJournal.open(directory: steps, step: 1)
        #expect(try journal.result() == result)
        #expect(journal.record.state == .completedWithRetries)
        let path = steps + "/step-1/result"
        var damaged = try bytes(path)
        #expect(Array(damaged.prefix(4)) == Array("EFRS".utf8))
        damaged[5000] ^= 1
        try write(damaged, to: path)
        #expect(failure { _ = try journal.result() }?.description.contains("checksum mismatch") == true)
    }

    @Test func aResumedCutMustMatchTheRecordedReceipts() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            for sequence in 0..<3 as Range<UInt64> { try journal.recordReceipt(receipt(sequence)) }
            try journal.sealReceipts()
            #expect(journal.record.parcels == 3 && journal.record.receiptsSealed)
        }
        let journal = try StepJournal.open(directory: steps, step: 1)
        try journal.recordReceipt(receipt(1))
        var changed = receipt(2)
        changed.checksum ^= 1
        #expect(failure { try journal.recordReceipt(changed) }?.description.contains("sources changed") == true)
        #expect(failure { try journal.recordReceipt(receipt(3)) }?.description.contains("sources changed") == true)
        #expect(try journal.recovered().receipts.count == 3)
    }

    @Test func aSealedLogMissingAReceiptIsCorruption() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            for sequence in 0..<3 as Range<UInt64> { try journal.recordReceipt(receipt(sequence)) }
            try journal.sealReceipts()
        }
        let log = steps + "/step-1/receipts.log"
        let text = try bytes(log)
        try write(Array(text[..<text.firstIndex(of: 0x0A)!]) + [0x0A], to: log)
        let journal = try StepJournal.open(directory: steps, step: 1)
        #expect(failure { _ = try journal.recovered() }?.description.contains("sealed") == true)
    }

    @Test func aCorruptOrMissingStepFileGivesAOneLineError() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        _ = try StepJournal.create(directory: steps, record: record(1))
        let path = steps + "/step-1/step.json"
        let original = try bytes(path)
        let text = String(decoding: original, as: UTF8.self)
        let edited = { (old: String, new: String) in Array(text.replacingOccurrences(of: old, with: new).utf8) }
        let damages: [(String, [UInt8])] = [
            ("not valid JSON (truncated or damaged)", Array(original.prefix(original.count / 2))),
            ("not valid JSON (truncated or damaged)", []),
            ("wrong type at 'step'", edited("\"step\" : 1", "\"step\" : \"one\"")),
            ("missing field 'task'", edited("\"task\"", "\"tusk\"")),
            ("unknown state 'sleeping'", edited("\"state\" : \"pending\"", "\"state\" : \"sleeping\"")),
            ("unsupported version 2 (this program reads version 1)", edited("\"version\" : 1", "\"version\" : 2")),
        ]
        for (reason, damaged) in damages {
            try write(damaged, to: path)
            for error in [
                failure { _ = try StepJournal.open(directory: steps, step: 1) },
                failure { _ = try StepJournal.steps(in: steps) },
            ] {
                let message = error?.description ?? ""
                #expect(message == "corrupt step journal file '\(path)': \(reason)")
            }
        }
        try FileManager.default.removeItem(atPath: path)
        let error = failure { _ = try StepJournal.open(directory: steps, step: 1) }
        #expect(error == .journal("step journal file '\(path)' is missing"))
    }

    @Test func stepFilesSpellStatesAsTheirRawValues() throws {
        #expect(
            StepState.allCases.map(\.rawValue) == [
                "pending", "running", "completed", "completed-with-retries", "failed", "cancelled", "interrupted",
            ])
        #expect(StepState.allCases.map(\.description) == StepState.allCases.map(\.rawValue))
        #expect(StepState.allCases.filter(\.isFinished) == [.completed, .completedWithRetries])
        #expect(StepState.allCases.filter(\.isFailure) == [.failed, .cancelled, .interrupted])
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        do {
            let journal = try StepJournal.create(directory: steps, record: record(1))
            try journal.update(state: .running)
            try journal.complete(result: [1, 2, 3], state: .completedWithRetries)
        }
        let text = String(decoding: try bytes(steps + "/step-1/step.json"), as: UTF8.self)
        #expect(text.contains("\n  \"state\" : \"completed-with-retries\",\n"))
        for state in ["pending", "running", "completed-with-retries"] {
            #expect(text.contains("\n      \"state\" : \"\(state)\",\n"))
        }
        let decoded = try JSONDecoder().decode(StepRecord.self, from: Data(text.utf8))
        #expect(decoded.timeline.map(\.state) == [.pending, .running, .completedWithRetries])
    }

    @Test func anUnknownStateInTheTimelineIsNamed() throws {
        let directory = try TemporaryDirectory()
        let steps = directory.path("steps")
        try StepJournal.create(directory: steps, record: record(1)).update(state: .running)
        let path = steps + "/step-1/step.json"
        let text = String(decoding: try bytes(path), as: UTF8.self)
        #expect(text.contains("\"state\" : \"pending\""))  // only in the timeline
        try write(
            Array(text.replacingOccurrences(of: "\"state\" : \"pending\"", with: "\"state\" : \"paused\"").utf8),
            to: path)
        let error = failure { _ = try StepJournal.open(directory: steps, step: 1) }
        #expect(error == .journal("corrupt step journal file '\(path)': unknown state 'paused' in the timeline"))
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(StepState.self, from: Data("\"paused\"".utf8))
        }
        #expect(try JSONDecoder().decode([StepState].self, from: Data("[\"interrupted\"]".utf8)) == [.interrupted])
    }

    @Test func aDirectoryThatCannotBeWrittenGivesAClearError() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.file("plain", [])
        let error = failure { _ = try StepJournal.create(directory: file + "/steps", record: record(1)) }
        #expect(error == .io(path: file + "/steps", operation: "create directory", errno: ENOTDIR))
        #expect(error?.description.hasSuffix("/plain/steps': Not a directory") == true)
        let listing = failure { _ = try StepJournal.steps(in: file) }
        #expect(listing == .io(path: file, operation: "open directory", errno: ENOTDIR))
        guard getuid() != 0 else { return }  // root writes anywhere
        let locked = directory.path("locked")
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: false)
        chmod(locked, 0o555)
        defer { chmod(locked, 0o755) }
        let denied = failure { _ = try StepJournal.create(directory: locked, record: record(1)) }
        #expect(denied == .io(path: locked + "/step-1.tmp", operation: "create directory", errno: EACCES))
    }

    @Test func aStepThatReadStandardInputCannotBeResumed() throws {
        let directory = try TemporaryDirectory()
        let journal = try StepJournal.create(directory: directory.path("steps"), record: record(1, sources: ["-"]))
        #expect(!journal.record.isResumable)
        try journal.recordReceipt(receipt(0))
        #expect(failure { _ = try journal.recovered() }?.description.contains("standard input") == true)
    }

    @Test func invalidRecordsAreRefused() throws {
        let directory = try TemporaryDirectory()
        var bad = record(1)
        bad.compression = "gzip"
        #expect(failure { _ = try StepJournal.create(directory: directory.path("steps"), record: bad) } != nil)
        bad = record(1)
        bad.parcelSize = 0
        #expect(failure { _ = try StepJournal.create(directory: directory.path("steps"), record: bad) } != nil)
        #expect(try StepJournal.steps(in: directory.path("steps")).isEmpty)
    }
}

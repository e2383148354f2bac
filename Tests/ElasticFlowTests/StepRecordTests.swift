import Foundation
import Testing

@testable import ElasticFlow

/// What step.json may hold: a record is read back to cut the parcels again, so a value no run may
/// use is refused as corruption, in one line, before anything acts on it.
@Suite struct StepRecordTests {
    static let hugeParcel = 100 << 30

    /// A resume trusted `parcelSize: 107374182400` and aborted allocating the parcel (SIGABRT).
    @Test func aStepFileWithAnImpossibleParcelSizeIsRefusedInOneLine() throws {
        var record = StepRecord(step: 1, name: "s", task: "wordcount", sources: ["a.txt"], parcelSize: 4096)
        record.timeline = [StepRecord.Event(state: .pending, time: 0, detail: "")]
        var bytes = try StepJournal.encodedRecord(record)
        #expect(try StepJournal.decodeRecord(bytes, path: "step.json", step: 1) == record)
        record.parcelSize = Self.hugeParcel
        bytes = Array(
            String(decoding: bytes, as: UTF8.self).replacingOccurrences(
                of: "\"parcelSize\" : 4096", with: "\"parcelSize\" : \(Self.hugeParcel)"
            ).utf8)
        do {
            _ = try StepJournal.decodeRecord(bytes, path: "step.json", step: 1)
            Issue.record("a parcel size of 100 GiB was accepted")
        } catch {
            #expect(error.description.contains("corrupt step journal file 'step.json'"))
            #expect(error.description.contains("over the limit"))
            #expect(!error.description.contains("\n"))
        }
        #expect(record.problem() != nil)
    }

    /// Found by the `step_record` fuzz target: a compression holding "\n" (a JSON escape) was
    /// quoted as it was, so the error printed two lines; any text the file holds was uncapped.
    @Test func textQuotedFromAStepFileStaysOnOneShortLine() throws {
        var record = StepRecord(step: 1, name: "s", task: "wordcount", sources: ["a.txt"], parcelSize: 4096)
        record.timeline = [StepRecord.Event(state: .pending, time: 0, detail: "")]
        let text = String(decoding: try StepJournal.encodedRecord(record), as: UTF8.self)
        let damages = [
            ("\"compression\" : \"none\"", "\"compression\" : \"no\\nne\""),
            ("\"compression\" : \"none\"", "\"compression\" : \"\\u001b[31mred\\u2028\""),
            ("\"compression\" : \"none\"", "\"compression\" : \"" + String(repeating: "z", count: 100_000) + "\""),
            ("\"state\" : \"pending\"", "\"state\" : \"pen\\r\\nding\""),
        ]
        for (old, new) in damages {
            let bytes = Array(text.replacingOccurrences(of: old, with: new).utf8)
            do {
                _ = try StepJournal.decodeRecord(bytes, path: "step.json", step: 1)
                Issue.record("accepted: \(new.prefix(40))")
            } catch {
                let message = error.description
                #expect(!message.contains("\n") && !message.contains("\r") && !message.contains("\u{1B}"))
                #expect(!message.contains("\u{2028}") && message.count < 400, "\(message.prefix(80))")
                #expect(message.hasPrefix("corrupt step journal file 'step.json'"))
            }
        }
    }

    @Test func resumeRefusesAStepFileEditedToAnImpossibleParcelSize() throws {
        let directory = try TemporaryDirectory()
        let input = try directory.file("in.txt", Array("a b c\nb c\nc\n".utf8))
        let steps = directory.path("steps")
        let first = try CommandRunner.run(["count", "--step-data", steps, input])
        #expect(first.status == 0, "\(first.stderr)")
        let path = steps + "/step-1/step.json"
        var json = try #require(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        json["parcelSize"] = Self.hugeParcel
        json["state"] = "failed"
        json["failure"] = "edited"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        let resumed = try CommandRunner.run(["resume", "--step-data", steps])
        #expect(resumed.status == 1, "\(resumed.stderr)")
        let lines = resumed.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("over the limit"), "\(resumed.stderr)")
        #expect(resumed.stdout.isEmpty)
    }
}

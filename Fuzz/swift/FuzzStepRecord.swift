// libFuzzer target: step.json as the journal reads it (`StepJournal.decodeRecord`: JSON, then the
// record's own checks, Steps/StepJournal.swift and StepRecord.swift). A record accepted is
// written and read back unchanged; a file refused gets one line naming it.
@testable import ElasticFlow

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStepRecord(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    let record: StepRecord
    do {
        record = try StepJournal.decodeRecord(input, path: "step.json", step: 1)
    } catch {
        expectOneLine(error)
        expect(error.description.contains("'step.json'"), "the error names the file: \(error)")
        return 0
    }
    do {
        let written = try StepJournal.encodedRecord(record)
        let again = try StepJournal.decodeRecord(written, path: "step.json", step: 1)
        expect(again == record, "a record written reads back the same")
        expect(try StepJournal.encodedRecord(again) == written, "and writes the same bytes")
    } catch {
        expect(false, "a record accepted can be written and read back: \(error)")
    }
    return 0
}

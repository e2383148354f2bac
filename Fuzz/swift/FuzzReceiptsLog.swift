// libFuzzer target: receipts.log as recovery reads it (`StepJournal.scan`, Steps/StepJournal.swift)
// and the receipt lines in it (`Receipt(_:)`, Parcels/Receipt.swift). Every line starting before
// the durable length must be a valid receipt (or the file is reported corrupt, in one line);
// past it, reading stops at the first bad line, though two receipts for one parcel are corrupt
// anywhere. What is kept is whole lines, each exactly as the journal writes a receipt.
@testable import ElasticFlow

private let sources = 4

private func scan(_ input: [UInt8], durable: Int) {
    do {
        let (receipts, valid) = try StepJournal.scan(
            input, durableLength: durable, step: 1, sources: sources, path: "receipts.log")
        expect(valid <= input.count && valid >= min(durable, input.count), "the durable part is all valid")
        expect(valid == 0 || input[valid - 1] == 0x0A, "whole lines only")
        var lines = 0
        for line in input[..<valid].split(separator: 0x0A, omittingEmptySubsequences: false).dropLast() {
            lines += 1
            // A line is `RECEIPT CRC` as the journal writes it, or a bare `RECEIPT` (older journals).
            let text = String(decoding: line, as: UTF8.self)
            let head = text.lastIndex(of: " ").map { String(text[..<$0]) } ?? text
            guard let receipt = Receipt(head) else { return expect(false, "line \(lines) is a receipt") }
            expect(text == receipt.description || text == StepJournal.logLine(receipt), "kept as written")
            expect(receipts[receipt.sequence] == receipt, "kept as read")
            expect(receipt.step == 1 && Int(receipt.partition) < sources, "of this step and its sources")
        }
        expect(receipts.count <= lines, "one receipt per line at most")
    } catch {
        expectOneLine(error)
        // Past the durable part a bad line ends the log, but two different receipts for one
        // parcel are corruption anywhere: the journal never writes both, so no crash tears a
        // log into that.
        expect(
            durable > 0 || error.description.contains("second receipt"),
            "only the durable part can be corrupt: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzReceiptsLog(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    scan(input, durable: 0)
    scan(input, durable: input.count)
    scan(input, durable: input.count / 2)
    // A single line, as `Receipt(_:)` takes it: what parses prints as a form that parses the same.
    if let receipt = Receipt(String(decoding: input, as: UTF8.self)) {
        expect(Receipt(receipt.description) == receipt, "a receipt's printable form parses back")
    }
    return 0
}

// libFuzzer target: the journal's binary files, `checkpoint` (`StepCheckpoint(decoding:)`) and
// `result` (`StepResultFile.decode`), Steps/StepCheckpoint.swift. Random bytes stop at the
// CRC32C that closes each file, so each input is also tried with its last four bytes replaced
// by the right CRC: the fields behind it then meet mutated data too. A file accepted re-encodes
// to exactly its bytes; a file refused gets one line naming it.
@testable import ElasticFlow

/// The bytes with a correct CRC32C in their last four.
private func resealed(_ input: [UInt8]) -> [UInt8] {
    guard input.count >= 4 else { return input }
    var bytes = Array(input[..<(input.count - 4)])
    JournalBytes.appendChecksum(to: &bytes)
    return bytes
}

/// The step the file says it is for (bytes 8..<12), so the step check passes as often as not.
private func claimedStep(_ bytes: [UInt8]) -> UInt32 {
    guard bytes.count >= 12 else { return 1 }
    return bytes[8..<12].reversed().reduce(0) { $0 << 8 | UInt32($1) }
}

private func check(_ bytes: [UInt8]) {
    let step = claimedStep(bytes)
    do {
        let checkpoint = try StepCheckpoint(decoding: bytes, path: "checkpoint", step: step)
        expect(checkpoint.step == step, "the step asked for")
        expect(zip(checkpoint.aggregated, checkpoint.aggregated.dropFirst()).allSatisfy { $0 < $1 }, "ascending")
        expect(checkpoint.encoded() == bytes, "a checkpoint re-encodes to its bytes")
    } catch {
        expectOneLine(error)
        expect(error.description.contains("'checkpoint'"), "the error names the file: \(error)")
    }
    do {
        let result = try StepResultFile.decode(bytes, path: "result", step: step)
        expect(StepResultFile.encode(step: step, result: result) == bytes, "a result file re-encodes to its bytes")
    } catch {
        expectOneLine(error)
        expect(error.description.contains("'result'"), "the error names the file: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    check(input)
    check(resealed(input))
    return 0
}

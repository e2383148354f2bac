// libFuzzer target: FlowValue decoding (Aggregation/FlowValue+Encoding.swift), what a master
// reads from a Flow task's RESULT. The form is canonical, so the promise is exact: whatever
// decodes re-encodes to exactly the input, and whatever is refused gets a one-line reason.
@testable import ElasticFlow

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFlowValue(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    do {
        let value = try FlowValue(decoding: input)
        expect(value.encoded() == input, "a decoded value re-encodes to the input")
    } catch {
        expectOneLine(error)
    }
    return 0
}

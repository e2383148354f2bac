// libFuzzer target: the heads of the payloads a master and a worker take from each other after
// the handshake: a RESULT's envelope (`ResultEnvelope.decode`) and a shared-input PARCEL's range
// request (`RangeRequest(decoding:)`), Cluster/ResultEnvelope.swift. Both encodings are
// canonical: what decodes re-encodes to exactly the bytes read.
@testable import ElasticFlow

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzResultEnvelope(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    do {
        let (envelope, body) = try ResultEnvelope.decode(input)
        expect(body <= input.count, "the body starts inside the payload")
        expect(!envelope.entries.isEmpty && envelope.entries.count <= CombineSettings.receiptLimit, "receipt count")
        expect(envelope.kind == .combined || envelope.entries.count == 1, "a single result lists one receipt")
        expect(envelope.encoded() == Array(input[..<body]), "the envelope re-encodes to the bytes read")
    } catch {
        expectOneLine(error)
    }
    do {
        let request = try RangeRequest(decoding: input)
        expect(input.count == RangeRequest.encodedSize, "a range request is exactly its size")
        expect(
            request.range.length > 0 && request.range.offset + request.range.length <= request.fileSize, "in the file")
        expect(request.encoded() == input, "the range request re-encodes to the bytes read")
    } catch {
        expectOneLine(error)
    }
    return 0
}

// libFuzzer target: the HELLO message both sides decode before the peer is authenticated
// (`Hello(decoding:)`, Cluster/Wire.swift), and the proof check on what it carries
// (`Authentication.verify`). A HELLO decoded encodes to a HELLO that decodes the same; a proof is
// accepted exactly when it is the one the cookie makes for those nonces.
@testable import ElasticFlow

private let cookie = Array("fuzzing-cookie".utf8)
private let ownNonce = [UInt8](repeating: 0x5A, count: 32)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHello(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    let hello: Hello
    do {
        hello = try Hello(decoding: input)
    } catch {
        expectOneLine(error)
        return 0
    }
    // A HELLO of another version is refused by its version alone: its other fields mean nothing.
    guard Int(hello.version) == ElasticFlowVersion.wireProtocol else { return 0 }
    expect(hello.nonce.count == 32 && (hello.proof.isEmpty || hello.proof.count == 32), "field sizes")
    let encoded = hello.encoded()
    let again: Hello
    do {
        again = try Hello(decoding: encoded)
    } catch {
        expect(false, "a HELLO re-encoded decodes: \(error)")
        return 0
    }
    // Names are cut when encoded (to 1024 bytes, or 65535), possibly inside a character: the
    // round trip is exact for the names that fit.
    let nameFits = hello.name.utf8.count <= 1024
    expect(
        !nameFits || again.name == hello.name, "a HELLO re-encoded keeps its name")
    expect(
        again.version == hello.version && again.role == hello.role && again.codecs == hello.codecs
            && again.nonce == hello.nonce && again.proof == hello.proof && again.threads == hello.threads,
        "a HELLO re-encoded decodes to the same fields")
    // Unless the name held invalid UTF-8 (decoded as U+FFFD), the encoding is the input's prefix:
    // nothing else is normalized on the way (trailing bytes are ignored).
    if nameFits && !hello.name.unicodeScalars.contains("\u{FFFD}") {
        expect(input.starts(with: encoded), "the encoding is the input's prefix")
    }

    let expected = Authentication.proof(cookie: cookie, role: hello.role, own: hello.nonce, peer: ownNonce)
    let accepted = Authentication.verify(
        cookie: cookie, peerRole: hello.role, peer: hello.nonce, own: ownNonce, proof: hello.proof)
    expect(accepted == (hello.proof == expected), "the proof is accepted exactly when it is the cookie's")
    expect(
        Authentication.verify(cookie: cookie, peerRole: hello.role, peer: hello.nonce, own: ownNonce, proof: expected),
        "the cookie's proof is accepted")
    return 0
}

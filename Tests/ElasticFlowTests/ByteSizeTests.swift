import Testing

@testable import ElasticFlow

@Suite struct ByteSizeTests {
    @Test func parsesPlainAndSuffixedSizes() throws {
        #expect(try ByteSize.parse("4096") == 4096)
        #expect(try ByteSize.parse("512KiB") == 512 * 1024)
        #expect(try ByteSize.parse("4MiB") == 4 << 20)
        #expect(try ByteSize.parse("4mb") == 4 << 20)
        #expect(try ByteSize.parse("1G") == 1 << 30)
    }

    @Test(arguments: ["", "MiB", "0", "-1", "4XB", "1.5MiB", "99999999999999999999GiB", "12 34"])
    func rejectsMalformedSizes(_ text: String) {
        #expect(throws: ElasticFlowError.self) { try ByteSize.parse(text) }
    }
}

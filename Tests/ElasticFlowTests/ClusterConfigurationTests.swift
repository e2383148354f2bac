import Testing

@testable import ElasticFlow

@Suite struct ClusterConfigurationTests {
    func configuration() throws -> ClusterConfiguration {
        ClusterConfiguration(workers: [], cookie: try Cookie("secret"))
    }

    @Test func defaultsAreValid() throws {
        try configuration().validate()
    }

    @Test(arguments: [
        "inFlight", "maxAttempts", "parcelSize", "maxPayload", "heartbeatInterval", "heartbeatTimeout",
        "connectTimeout", "parcelTimeout", "infiniteTimeout", "nanInterval",
    ])
    func rejectsEachValueOutOfRange(_ field: String) throws {
        var bad = try configuration()
        switch field {
        case "inFlight": bad.inFlight = 0
        case "maxAttempts": bad.maxAttempts = 0
        case "parcelSize": bad.parcelSize = 0
        case "maxPayload": bad.maxPayload = 0
        case "heartbeatInterval": bad.heartbeatInterval = 0
        case "heartbeatTimeout": bad.heartbeatTimeout = -1
        case "connectTimeout": bad.connectTimeout = 0
        case "parcelTimeout": bad.parcelTimeout = 0
        case "infiniteTimeout": bad.heartbeatTimeout = .infinity
        default: bad.heartbeatInterval = .nan
        }
        #expect(throws: ElasticFlowError.self) { try bad.validate() }
    }

    @Test func noParcelTimeoutIsValid() throws {
        var configuration = try configuration()
        configuration.parcelTimeout = nil
        try configuration.validate()
    }

    @Test func theClusterFileIsValidatedToo() throws {
        var file = ClusterFile(nodes: [])
        file.maxAttempts = 0
        #expect(throws: ElasticFlowError.self) { _ = try file.configuration(cookie: try Cookie("secret")) }
    }
}

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
        case "heartbeatInterval": bad.heartbeatInterval = .zero
        case "heartbeatTimeout": bad.heartbeatTimeout = .seconds(-1)
        case "connectTimeout": bad.connectTimeout = .zero
        case "parcelTimeout": bad.parcelTimeout = .zero
        case "infiniteTimeout": bad.heartbeatTimeout = .seconds(Int64.max)
        default: bad.heartbeatInterval = .seconds(601)
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

    @Test func exclusionJoinTimeoutAndSpeculationHaveRanges() throws {
        var configuration = try configuration()
        configuration.excludeAfter = nil
        configuration.speculation = nil
        try configuration.validate()
        for bad: (inout ClusterConfiguration) -> Void in [
            { $0.excludeAfter = 0 }, { $0.excludeAfter = 1001 }, { $0.joinTimeout = .zero },
            { $0.joinTimeout = .seconds(Int64.max) }, { $0.joinTimeout = .seconds(86401) },
            { $0.speculation = SpeculationSettings(multiplier: 0.5) },
            { $0.speculation = SpeculationSettings(minimumTime: .seconds(-1)) },
            { $0.speculation = SpeculationSettings(minimumFinished: 0) },
        ] {
            var changed = configuration
            bad(&changed)
            #expect(throws: ElasticFlowError.self) { try changed.validate() }
        }
        // The cluster file: 0 turns exclusion off, false turns speculation off.
        var file = ClusterFile(nodes: [])
        file.excludeAfter = 0
        file.speculation = false
        file.joinTimeout = 5
        let loaded = try file.configuration(cookie: try Cookie("secret"))
        #expect(loaded.excludeAfter == nil && loaded.speculation == nil && loaded.joinTimeout == .seconds(5))
        file.excludeAfter = -1
        #expect(throws: ElasticFlowError.self) { _ = try file.configuration(cookie: try Cookie("secret")) }
    }
}

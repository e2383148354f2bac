import Foundation
import Testing

@testable import ElasticFlow

/// A key a cluster file does not have is refused, naming it and the nearest known key (a misspelt
/// key used to be ignored, and its default used without a word).
@Suite struct ClusterFileKeysTests {
    func load(_ json: String) throws -> Result<ClusterFile, ElasticFlowError> {
        let directory = try TemporaryDirectory()
        let path = try directory.file("cluster.json", Array(json.utf8))
        do throws(ElasticFlowError) {
            return .success(try ClusterFile.load(path))
        } catch {
            return .failure(error)
        }
    }

    func message(_ json: String) throws -> String {
        guard case .failure(let error) = try load(json) else { return "accepted" }
        return error.description
    }

    @Test func aMisspeltKeyNamesTheNearestKnownOne() throws {
        let text = try message(#"{"nodes": [], "compresion": "zstd"}"#)
        #expect(text.contains(#"unknown key "compresion" in cluster file '"#), "\(text)")
        #expect(text.hasSuffix(#"cluster.json' (did you mean "compression"?)"#), "\(text)")
        for (key, nearest) in [
            ("parcelsize", "parcelSize"), ("cookie_file", "cookieFile"), ("inflight", "inFlight"),
            ("heartbeatTimout", "heartbeatTimeout"), ("minworkers", "minWorkers"), ("node", "nodes"),
        ] {
            let text = try message(#"{"nodes": [], "\#(key)": 1}"#)
            #expect(
                text.contains(#"unknown key "\#(key)""#) && text.contains(#"did you mean "\#(nearest)"?"#), "\(text)")
        }
    }

    @Test func aMisspeltKeyInANodeNamesTheNode() throws {
        let text = try message(
            #"{"nodes": [{"name": "w", "address": "127.0.0.1:1", "role": "worker"}, {"name": "v", "adress": "x"}]}"#)
        #expect(text.contains(#"unknown key "adress" in node 2 of cluster file '"#), "\(text)")
        #expect(text.contains(#"(did you mean "address"?)"#), "\(text)")
    }

    @Test func everyKeyTheFormatHasIsAccepted() throws {
        // The known keys are read from `ClusterFile` itself: a file that sets every one of them
        // loads, and an encoded file (every key present) loads back the same.
        #expect(ClusterFile.knownKeys.contains("compression") && ClusterFile.knownKeys.contains("nodes"))
        #expect(Set(ClusterFile.knownNodeKeys) == ["name", "address", "role"])
        var file = ClusterFile(nodes: [.init(name: "w", address: "127.0.0.1:1", role: "worker")])
        file.compression = "zstd:3"
        file.minWorkers = 1
        file.speculation = false
        let encoded = String(decoding: try JSONEncoder().encode(file), as: UTF8.self)
        guard case .success(let loaded) = try load(encoded) else {
            Issue.record("an encoded cluster file was refused: \(try message(encoded))")
            return
        }
        #expect(loaded.compression == "zstd:3" && loaded.minWorkers == 1 && loaded.speculation == false)
    }

    @Test func otherErrorsAreUnchanged() throws {
        #expect(try message("{nodes").contains("is not valid JSON"))
        #expect(try message(#"{"cookieFile": "c"}"#).contains("missing key 'nodes'"))
        #expect(try message(#"{"nodes": [], "inFlight": "x"}"#).contains("wrong type at 'inFlight'"))
    }

    @Test func theCommandRefusesItInOneLine() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.file("small.txt", Array("a\n".utf8))
        let config = try directory.file("cluster.json", Array(#"{"nodes": [], "compresion": "none"}"#.utf8))
        let result = try CommandRunner.run(["run", "--config", config, path], timeout: 20)
        #expect(result.status != 0 && result.stdout.isEmpty)
        #expect(
            result.stderr
                == "elasticflow: error: unknown key \"compresion\" in cluster file '\(config)' (did you mean \"compression\"?)\n",
            "\(result.stderr)")
    }

    @Test func nearestNameCountsEdits() {
        let scalars = { (text: String) in Array(text.unicodeScalars) }
        #expect(NearestName.editDistance(scalars("kitten"), scalars("sitting")) == 3)
        #expect(NearestName.editDistance(scalars(""), scalars("abc")) == 3)
        #expect(NearestName.editDistance(scalars("abc"), scalars("")) == 3)
        #expect(NearestName.nearest(to: "combin", among: ["combine", "combineDelay"]) == "combine")
        #expect(NearestName.nearest(to: "x", among: []) == nil)
    }
}

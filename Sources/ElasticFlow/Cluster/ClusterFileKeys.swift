import Foundation

extension ClusterFile {
    /// The keys a cluster file may hold: the names of `ClusterFile`'s stored properties, which are
    /// its JSON keys (synthesized `Codable`). Read from the type itself, so a key added to it is
    /// known here without a second list to keep in step.
    static var knownKeys: [String] { Mirror(reflecting: ClusterFile(nodes: [])).children.compactMap(\.label) }
    /// The keys of a `nodes` entry.
    static var knownNodeKeys: [String] {
        Mirror(reflecting: Node(name: "", address: "", role: "")).children.compactMap(\.label)
    }

    /// Refuses a key the file format does not have, at the top level or in a node, naming the
    /// nearest known one (a misspelt `"compresion"` would otherwise be ignored and its default
    /// used). Leaves everything else — JSON syntax, types, missing keys — to the decoder.
    /// - Throws: `ElasticFlowError.invalidArgument`: `unknown key "compresion" in cluster file
    ///   'PATH' (did you mean "compression"?)`.
    static func checkKeys(_ data: Data, path: String) throws(ElasticFlowError) {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return }
        try check(object.keys, against: knownKeys, in: "cluster file '\(path)'")
        guard let nodes = object["nodes"] as? [Any] else { return }
        for (index, node) in nodes.enumerated() {
            guard let node = node as? [String: Any] else { continue }
            try check(node.keys, against: knownNodeKeys, in: "node \(index + 1) of cluster file '\(path)'")
        }
    }

    private static func check(_ keys: some Sequence<String>, against known: [String], in place: String)
        throws(ElasticFlowError)
    {
        // Sorted, so a file with several bad keys always reports the same one first.
        for key in keys.sorted() where !known.contains(key) {
            let hint = NearestName.nearest(to: key, among: known).map { " (did you mean \"\($0)\"?)" } ?? ""
            throw .invalidArgument("unknown key \"\(PeerText.escaped(key))\" in \(place)\(hint)")
        }
    }
}

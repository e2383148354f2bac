import ElasticFlow
import Foundation

/// What the status server answers, by path: `/` (the live page), `/api/status` (the board's
/// snapshot as JSON), `/metrics` (Prometheus text, when the routes have metrics); anything else
/// is 404, a method other than GET or HEAD 405.
public struct StatusRoutes: Sendable {
    /// One answer: status code, content type, extra headers, body.
    public struct Response: Sendable {
        /// The HTTP status code.
        public var status: Int
        /// The `Content-Type` header.
        public var contentType: String
        /// Headers besides `Content-Type`, `Content-Length` and `Cache-Control`.
        public var headers: [(String, String)] = []
        /// The body.
        public var body: [UInt8]
    }

    /// The board every answer is made from.
    public let board: StatusBoard
    /// The Prometheus exporter for `/metrics`, or nil (then `/metrics` is 404).
    public let metrics: StatusMetrics?
    /// Whether `/` serves the live page (a master's server) or only a short index (a worker's).
    public let servesPage: Bool

    /// Routes over `board`.
    /// - Parameters:
    ///   - board: the board to show.
    ///   - metrics: the exporter for `/metrics`, or nil.
    ///   - servesPage: `/` is the live page (otherwise a plain index of the paths).
    public init(board: StatusBoard, metrics: StatusMetrics?, servesPage: Bool = true) {
        self.board = board
        self.metrics = metrics
        self.servesPage = servesPage
    }

    /// The answer to `method uri`.
    public func respond(method: String, uri: String) -> Response {
        guard method == "GET" || method == "HEAD" else {
            return Response(
                status: 405, contentType: "text/plain; charset=utf-8", headers: [("Allow", "GET, HEAD")],
                body: Array("method not allowed: the status server is read-only\n".utf8))
        }
        let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        switch path {
        case "/", "/index.html":
            if servesPage {
                return Response(
                    status: 200, contentType: "text/html; charset=utf-8",
                    headers: [("Content-Security-Policy", StatusPage.contentSecurityPolicy)],
                    body: Array(StatusPage.html.utf8))
            }
            return Response(
                status: 200, contentType: "text/plain; charset=utf-8",
                body: Array("elasticflow \(board.role) \(board.name): /api/status (JSON), /metrics (Prometheus)\n".utf8)
            )
        case "/api/status":
            return Response(
                status: 200, contentType: "application/json; charset=utf-8", body: Self.json(board.snapshot()))
        case "/metrics" where metrics != nil:
            return Response(
                status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics!.render(board.snapshot()))
        default:
            return Response(
                status: 404, contentType: "text/plain; charset=utf-8", body: Array("not found: \(path)\n".utf8))
        }
    }

    /// The snapshot as JSON, with `<`, `>` and `&` escaped (`\u003c`...) so that no text a peer
    /// sent can close a script or start markup wherever the JSON is pasted. In JSON these bytes
    /// can only occur inside strings, so replacing them byte for byte keeps the same value.
    public static func json(_ snapshot: StatusSnapshot) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        guard let data = try? encoder.encode(snapshot) else { return Array("{}".utf8) }
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 64)
        for byte in data {
            switch byte {
            case UInt8(ascii: "<"): out.append(contentsOf: Array("\\u003c".utf8))
            case UInt8(ascii: ">"): out.append(contentsOf: Array("\\u003e".utf8))
            case UInt8(ascii: "&"): out.append(contentsOf: Array("\\u0026".utf8))
            default: out.append(byte)
            }
        }
        return out
    }
}

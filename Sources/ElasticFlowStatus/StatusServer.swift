import ElasticFlow
import NIOCore
import NIOHTTP1
import NIOPosix

/// The status server: an unauthenticated, read-only HTTP/1.1 view of a `StatusBoard` on one
/// address (loopback unless told otherwise): `/` the live page, `/api/status` the snapshot as
/// JSON, `/metrics` Prometheus text. HTTP is swift-nio's (NIOHTTP1's parser and encoder), on one
/// event-loop thread of its own; every request is answered from `StatusRoutes`, which takes the
/// board's lock once for a snapshot.
public final class StatusServer: Sendable {
    /// The address the server is bound to (the port filled in when 0 was asked).
    public let address: NodeAddress
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    /// Binds `address` and starts serving at once (before any work, so a port in use is an error
    /// before anything runs).
    /// - Parameters:
    ///   - address: where to listen; port 0 takes any free port.
    ///   - routes: what the server answers.
    /// - Throws: `ElasticFlowError.invalidArgument` when the address cannot be bound (in use, not
    ///   this machine's), with one line that names it.
    public init(address: NodeAddress, routes: StatusRoutes) throws(ElasticFlowError) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(StatusHTTPHandler(routes: routes))
                }
            }
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
        do {
            channel = try bootstrap.bind(host: address.host, port: Int(address.port)).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw .invalidArgument("cannot serve on \(address): \(Self.reason(error))")
        }
        self.group = group
        let port = channel.localAddress?.port ?? Int(address.port)
        self.address = NodeAddress(host: address.host, port: UInt16(clamping: port))
    }

    /// The bind failure in a few words (`address already in use`).
    private static func reason(_ error: any Error) -> String {
        if let error = error as? IOError {
            if error.errnoCode == 98 { return "address already in use" }
            if error.errnoCode == 99 { return "address not available on this machine" }
            if error.errnoCode == 13 { return "permission denied" }
        }
        return "\(error)"
    }

    /// Stops listening and closes every connection (waits for the server's thread to end).
    public func shutdown() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Answers each request on one connection: the head is kept, the body ignored, and the answer
/// goes out on the request's end.
final class StatusHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let routes: StatusRoutes
    private var head: HTTPRequestHead?

    init(routes: StatusRoutes) { self.routes = routes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let response = routes.respond(method: head.method.rawValue, uri: head.uri)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Cache-Control", value: "no-store")
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: response.status)
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        if head.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: response.body.count)
            buffer.writeBytes(response.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
        }
    }
}

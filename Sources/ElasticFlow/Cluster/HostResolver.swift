import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Host names resolved off the event loop: a DNS answer can take seconds (a cluster's service
/// names in Kubernetes, a resolver that times out), and resolving on the loop thread stalled every
/// link's heartbeats and, on the master, held the step lock meanwhile. The loop is then given the
/// address as a literal, which `ef_loop_connect` takes without a lookup.
enum HostResolver {
    /// Whether `host` is an IPv4 or IPv6 literal (nothing to resolve).
    static func isLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// The first address `host` resolves to for a TCP connection (what `ef_loop_connect` would
    /// take), as a literal; nil when it does not resolve. Blocks: never on a loop thread.
    static func lookup(_ host: String) -> String? {
        guard !host.isEmpty else { return nil }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &found) == 0, let first = found else { return nil }
        defer { freeaddrinfo(found) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let written: UnsafePointer<CChar>?
        switch first.pointee.ai_family {
        case AF_INET:
            var address = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                $0.pointee.sin_addr
            }
            written = inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
        case AF_INET6:
            var address = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                $0.pointee.sin6_addr
            }
            written = inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
        default:
            return nil
        }
        guard written != nil else { return nil }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Resolves `host` on a thread of the system's, then calls `done` there with the literal,
    /// or nil when it does not resolve.
    static func resolve(_ host: String, then done: @escaping @Sendable (String?) -> Void) {
        DispatchQueue.global(qos: .userInitiated).async { done(lookup(host)) }
    }
}

import Foundation
import Support

/// TCP port probes on the loopback (or any local) address.
public enum Ports {
    /// Whether mosquitto could listen on `host:port` now. The probe binds with SO_REUSEADDR
    /// like mosquitto does, so a port held by a listening socket is taken while one only
    /// lingering in TIME_WAIT after a broker restart is free.
    public static func isFree(host: String = "127.0.0.1", port: UInt16) -> Bool {
        guard let socket = try? Socket(host: host, port: port) else { return false }
        return socket.bind()
    }

    /// A port the kernel considers free now; another process may take it before it is used.
    public static func freePort(host: String = "127.0.0.1") throws -> UInt16 {
        let socket = try Socket(host: host, port: 0)
        guard socket.bind(), let port = socket.localPort() else {
            throw VGWError(.io, "cannot find a free port on \(host): \(String(cString: strerror(errno)))")
        }
        return port
    }

    /// Whether something accepts TCP connections on `host:port`.
    public static func acceptsConnections(host: String = "127.0.0.1", port: UInt16) -> Bool {
        guard let socket = try? Socket(host: host, port: port) else { return false }
        return socket.connect()
    }
}

/// A TCP socket with its address, closed in deinit.
private final class Socket {
    private let fd: Int32
    private var address: sockaddr_storage
    private let length: socklen_t

    init(host: String, port: UInt16) throws {
        var storage = sockaddr_storage()
        var family: Int32 = AF_INET
        var parsed: Int32 = 0
        if host.contains(":") {
            family = AF_INET6
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            parsed = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    address.pointee.sin6_family = sa_family_t(AF_INET6)
                    address.pointee.sin6_port = port.bigEndian
                    return inet_pton(AF_INET6, host, &address.pointee.sin6_addr)
                }
            }
        } else {
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            parsed = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                    address.pointee.sin_family = sa_family_t(AF_INET)
                    address.pointee.sin_port = port.bigEndian
                    return inet_pton(AF_INET, host, &address.pointee.sin_addr)
                }
            }
        }
        guard parsed == 1 else { throw VGWError(.config, "not a numeric IP address: \(host)") }
        address = storage
        fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw VGWError(.io, "cannot create a socket: \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    func bind() -> Bool {
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) == 0 }
        }
    }

    func connect() -> Bool {
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) == 0 }
        }
    }

    func localPort() -> UInt16? {
        var bound = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) == 0 }
        }
        guard ok else { return nil }
        return withUnsafeBytes(of: &bound) { raw in
            // sin_port and sin6_port sit at the same offset, right after the family.
            UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
    }
}

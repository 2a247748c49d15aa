import Dispatch
import Support
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A scripted TCP peer for the one case a real mosquitto cannot produce on demand: a
/// broker that breaks the protocol. Every connection gets a successful MQTT 5 CONNACK;
/// the first one then gets a packet of the reserved type 0, which libmosquitto treats as a
/// fatal protocol error.
final class FakeBroker: Sendable {
    let port: Int
    private let listener: Int32
    private let state = Mutex<(connections: Int, sockets: [Int32])>((0, []))

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw VGWError(.io, "socket: \(errno)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        // Port 0: the kernel picks a free one, with no window for another process to take it.
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 8) == 0 else {
            close(fd)
            throw VGWError(.io, "bind/listen: \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            close(fd)
            throw VGWError(.io, "getsockname: \(errno)")
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        listener = fd
        DispatchQueue.global().async { [self] in acceptLoop() }
    }

    var connections: Int { state.withLock { $0.connections } }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }  // listener closed
            let index = state.withLock { state -> Int in
                state.connections += 1
                state.sockets.append(client)
                return state.connections
            }
            // CONNACK: fixed header, remaining length 3, flags 0, reason 0, no properties.
            var reply: [UInt8] = [0x20, 0x03, 0x00, 0x00, 0x00]
            if index == 1 {
                reply += [0x00, 0x00]  // packet type 0 is reserved: a protocol error
            }
            _ = reply.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for fd in state.withLock({ $0.sockets }) {
            close(fd)
        }
    }
}

// A private, minimal mosquitto launcher for the MQTT tests. The shared broker fixture in
// TestSupport will replace it.

import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
  import Glibc
#endif

struct BrokerError: Error, CustomStringConvertible {
  var description: String
}

/// What the test broker should accept.
struct BrokerOptions: Sendable {
  /// Users for a `password_file`; when set, anonymous clients are refused.
  var users: [String: String] = [:]
  /// Lines of an `acl_file` (`topic readwrite allowed/#`).
  var acl: [String]?
  /// Extra configuration lines.
  var extraConfig: [String] = []
  /// Load the dynamic-security plugin with one admin client (`admin` / `adminpw`) whose role
  /// has exactly these ACLs (`[acltype, topic, allow]`), plus dynsec administration.
  var dynsecACLs: [(type: String, topic: String, allow: Bool)]?
}

/// One mosquitto process on a free loopback port, in a private temporary directory.
final class LocalBroker: Sendable {
  let port: Int
  let directory: URL
  private let configPath: String
  private let pid = Mutex<pid_t?>(nil)

  init(options: BrokerOptions) throws {
    port = try freePort()
    directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "mqtt-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    var config = [
      "listener \(port) 127.0.0.1",
      // As root mosquitto would switch to the `mosquitto` user, who cannot read our files.
      "user root",
      "persistence false",
      "log_dest stderr",
      "log_type all",
    ]
    if options.users.isEmpty {
      config.append("allow_anonymous true")
    } else {
      let passwordFile = directory.appendingPathComponent("passwd").path
      var first = true
      for (user, password) in options.users.sorted(by: { $0.key < $1.key }) {
        let args =
          first
          ? ["-b", "-c", passwordFile, user, password] : ["-b", passwordFile, user, password]
        try runToCompletion("/usr/bin/mosquitto_passwd", args)
        first = false
      }
      config += ["allow_anonymous false", "password_file \(passwordFile)"]
    }
    if let acl = options.acl {
      let aclFile = directory.appendingPathComponent("acl")
      try (acl.joined(separator: "\n") + "\n").write(to: aclFile, atomically: true, encoding: .utf8)
      config.append("acl_file \(aclFile.path)")
    }
    if let acls = options.dynsecACLs {
      let file = directory.appendingPathComponent("dynsec.json").path
      try runToCompletion("/usr/bin/mosquitto_ctrl", ["dynsec", "init", file, "admin", "adminpw"])
      try rewriteAdminRole(file: file, acls: acls)
      config += [
        "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
        "plugin_opt_config_file \(file)",
      ]
    }
    config += options.extraConfig
    configPath = directory.appendingPathComponent("mosquitto.conf").path
    try (config.joined(separator: "\n") + "\n").write(
      toFile: configPath, atomically: true, encoding: .utf8)
  }

  var logPath: String { directory.appendingPathComponent("mosquitto.log").path }

  /// The broker's log so far (attached to failures for diagnosis).
  var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

  /// Starts mosquitto and waits (bounded) until its port accepts connections.
  func start() throws {
    let child = try spawn("/usr/sbin/mosquitto", ["-c", configPath], output: logPath)
    pid.withLock { $0 = child }
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline {
      if canConnect(port: port) { return }
      var status: Int32 = 0
      if waitpid(child, &status, WNOHANG) == child {
        pid.withLock { $0 = nil }
        throw BrokerError(description: "mosquitto exited at start: \(log)")
      }
      usleep(10_000)
    }
    stop()
    throw BrokerError(description: "mosquitto did not listen on port \(port) within 5 s: \(log)")
  }

  /// Changes a user's password in the password file; mosquitto reads it at start.
  func setPassword(user: String, password: String) throws {
    let passwordFile = directory.appendingPathComponent("passwd").path
    try runToCompletion("/usr/bin/mosquitto_passwd", ["-b", passwordFile, user, password])
  }

  /// How many TCP connections the broker has logged so far.
  var connectionCount: Int {
    log.components(separatedBy: "\n").filter { $0.contains("New connection from") }.count
  }

  /// SIGTERM, then SIGKILL after 2 s; always reaps the process.
  func stop() {
    guard
      let child = pid.withLock({ pid in
        defer { pid = nil }
        return pid
      })
    else { return }
    kill(child, SIGCONT)  // in case a test paused it
    kill(child, SIGTERM)
    var status: Int32 = 0
    let deadline = ContinuousClock.now + .seconds(2)
    while ContinuousClock.now < deadline {
      if waitpid(child, &status, WNOHANG) == child { return }
      usleep(10_000)
    }
    kill(child, SIGKILL)
    _ = waitpid(child, &status, 0)
  }

  /// Kills the broker abruptly (no clean shutdown), as a crash would.
  func crash() {
    guard
      let child = pid.withLock({ pid in
        defer { pid = nil }
        return pid
      })
    else { return }
    kill(child, SIGKILL)
    var status: Int32 = 0
    _ = waitpid(child, &status, 0)
  }

  /// Freezes the broker: connections stay open but nothing is answered.
  func pause() {
    if let child = pid.withLock({ $0 }) { kill(child, SIGSTOP) }
  }

  func resume() {
    if let child = pid.withLock({ $0 }) { kill(child, SIGCONT) }
  }

  func cleanUp() {
    stop()
    try? FileManager.default.removeItem(at: directory)
  }
}

/// Runs `body` with a started broker; the broker is always stopped and reaped afterwards.
func withLocalBroker<T>(
  _ options: BrokerOptions = BrokerOptions(), _ body: (LocalBroker) async throws -> T
) async throws -> T {
  let broker = try LocalBroker(options: options)
  defer { broker.cleanUp() }
  try broker.start()
  do {
    return try await body(broker)
  } catch {
    // Keep the whole log for diagnosis; the temporary directory is removed.
    let kept = FileManager.default.temporaryDirectory.appendingPathComponent(
      "mqtt-test-failure-\(broker.port).log")
    try? broker.log.write(to: kept, atomically: true, encoding: .utf8)
    Issue.record("broker log (all of it in \(kept.path)):\n\(broker.log.suffix(3000))")
    throw error
  }
}

/// A port that was free a moment ago: bind to port 0 and read what the kernel chose.
func freePort() throws -> Int {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard fd >= 0 else { throw BrokerError(description: "socket: \(errno)") }
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = 0
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  let bound = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
    }
  }
  guard bound == 0 else { throw BrokerError(description: "bind: \(errno)") }
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  let named = withUnsafeMutablePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
  }
  guard named == 0 else { throw BrokerError(description: "getsockname: \(errno)") }
  return Int(UInt16(bigEndian: address.sin_port))
}

func canConnect(port: Int) -> Bool {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard fd >= 0 else { return false }
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = UInt16(port).bigEndian
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  return withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
    }
  }
}

/// posix_spawn with an empty signal mask and default signal handlers: a child spawned from
/// a Swift task would otherwise inherit a blocked mask, and mosquitto would ignore SIGTERM.
func spawn(_ path: String, _ arguments: [String], output: String?) throws -> pid_t {
  var attributes = posix_spawnattr_t()
  posix_spawnattr_init(&attributes)
  defer { posix_spawnattr_destroy(&attributes) }
  var emptyMask = sigset_t()
  sigemptyset(&emptyMask)
  posix_spawnattr_setsigmask(&attributes, &emptyMask)
  var defaults = sigset_t()
  sigemptyset(&defaults)
  for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGUSR1, SIGUSR2, SIGCHLD, SIGQUIT] {
    sigaddset(&defaults, signal)
  }
  posix_spawnattr_setsigdefault(&attributes, &defaults)
  posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

  var actions = posix_spawn_file_actions_t()
  posix_spawn_file_actions_init(&actions)
  defer { posix_spawn_file_actions_destroy(&actions) }
  let target = output ?? "/dev/null"
  posix_spawn_file_actions_addopen(&actions, 1, target, O_WRONLY | O_CREAT | O_APPEND, 0o644)
  posix_spawn_file_actions_adddup2(&actions, 1, 2)
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)

  let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
  defer { argv.forEach { free($0) } }
  var child: pid_t = 0
  let rc = posix_spawn(&child, path, &actions, &attributes, argv, environ)
  guard rc == 0 else {
    throw BrokerError(description: "posix_spawn \(path): \(String(cString: strerror(rc)))")
  }
  return child
}

/// Runs a helper program (mosquitto_passwd, mosquitto_ctrl) and checks it succeeded.
func runToCompletion(_ path: String, _ arguments: [String]) throws {
  let child = try spawn(path, arguments, output: nil)
  var status: Int32 = 0
  while waitpid(child, &status, 0) < 0 && errno == EINTR {}
  guard status == 0 else {
    throw BrokerError(
      description: "\(path) \(arguments.joined(separator: " ")) failed with status \(status)")
  }
}

/// Replaces the ACLs of the `admin` role made by `mosquitto_ctrl dynsec init`, keeping
/// its dynamic-security administration rights.
private func rewriteAdminRole(file: String, acls: [(type: String, topic: String, allow: Bool)])
  throws
{
  let data = try Data(contentsOf: URL(fileURLWithPath: file))
  guard var root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
    var roles = root["roles"] as? [[String: Any]], !roles.isEmpty
  else { throw BrokerError(description: "unexpected dynsec file") }
  var list: [[String: Any]] = [
    ["acltype": "publishClientSend", "topic": "$CONTROL/dynamic-security/#", "allow": true],
    ["acltype": "publishClientReceive", "topic": "$CONTROL/dynamic-security/#", "allow": true],
    ["acltype": "subscribePattern", "topic": "$CONTROL/dynamic-security/#", "allow": true],
  ]
  list += acls.map { ["acltype": $0.type, "topic": $0.topic, "allow": $0.allow] }
  roles[0]["acls"] = list
  root["roles"] = roles
  try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: file))
}

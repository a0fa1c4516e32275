import ArgumentParser
import Foundation
import Glibc
import Telemetry
import Web

/// `modelfs web`: the store's JSON API over HTTP (docs/WEB.md).
struct WebCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "web", abstract: "Serve the store's JSON API over HTTP (/api/v1, described at /api/v1/openapi.json).",
        discussion: "Reads from loopback need no user; changes need a bearer token from --tokens (lines 'TOKEN USER', mode 600) or a trusted proxy's header, and run as that user. See docs/WEB.md.")

    @Option(help: ArgumentHelp("The address to listen on.", valueName: "host:port")) var listen = "127.0.0.1:8080"
    @Option(help: ArgumentHelp("The tokens file: 'TOKEN USER' lines, the process owner's, mode 600.", valueName: "file")) var tokens: String?
    @Option(help: ArgumentHelp("Take the user from this header (X-Remote-User), set by a reverse proxy you trust; off by default.", valueName: "name"))
    var trustProxyHeader: String?
    @OptionGroup var store: StoreOptions

    @OptionGroup var jobOptions: JobOptions

    func run() throws {
        var options = try reporting { try WebCommand.options(listen: listen, tokens: tokens, trustProxyHeader: trustProxyHeader) }
        options.dataDirectory = store.resolvedDataDir
        // Before the registry opens: its catalog's transactions are timed from the first.
        Telemetry.bootstrap()
        let registry = try reporting { try store.openRegistry(role: "web") }
        // Jobs are recorded here, as by `modelfs train --detach`: a mount of the store runs them.
        options.jobs = try reporting { try jobOptions.service(registry, dataDir: store.resolvedDataDir, mountpoint: nil) }
        let server = WebServer(registry: registry, options: options, logger: Log.logger)
        // ArgumentParser's commands here are synchronous: the server runs on the concurrency pool.
        let finished = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: (any Error)?
        Task {
            do { try await server.run() } catch { failure = error }
            finished.signal()
        }
        finished.wait()
        if let failure { throw CLIError("web: \(failure)") }
    }

    /// `--listen`, `--tokens` and `--trust-proxy-header` (`mount`'s `--web…`), checked.
    static func options(listen: String, tokens: String?, trustProxyHeader: String?, prefix: String = "") throws -> WebServer.Options {
        var options = WebServer.Options()
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw CLIError("--\(prefix.isEmpty ? "listen" : prefix) is HOST:PORT, not \(listen)")
        }
        options.host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        options.port = port
        do { options.tokens = try tokens.map { path throws(TokensError) in try TokensFile(path: path) } } catch { throw CLIError("\(error)") }
        if let trustProxyHeader, !WebServer.isHeaderName(trustProxyHeader) {
            throw CLIError("--\(prefix.isEmpty ? "" : prefix + "-")trust-proxy-header: '\(trustProxyHeader)' is not a header's name")
        }
        options.trustedProxyHeader = trustProxyHeader
        return options
    }

    /// Refuses an address something already listens on: `mount --web` binds it only once the
    /// mount is live, so it is probed before, while the refusal can still reach the terminal.
    static func checkFree(_ options: WebServer.Options, flag: String) throws {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(options.host, String(options.port), &hints, &found) == 0, let address = found else {
            throw CLIError("\(flag): no address \(options.host)")
        }
        defer { freeaddrinfo(found) }
        let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var on: Int32 = 1  // as the server binds: a port left in TIME_WAIT is free
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        if bind(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 {
            throw CLIError("\(flag) \(options.host):\(options.port): \(String(cString: strerror(errno)))")
        }
    }
}

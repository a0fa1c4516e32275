import Foundation
import Telemetry
import HTTPTypes
import Hummingbird
import Jobs
import Logging
import ModelStore
import NIOCore
import Registry

/// `modelfs web`: the store's JSON API over HTTP (docs/WEB.md). Every operation is the CLI's:
/// names resolved to ids in front of the same port, the same rules and errors, as the user who asks.
public struct WebServer: Sendable {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 8080
        /// Who a bearer token is (the tokens file, read again when it changes); nil: no tokens, so
        /// writes need the proxy's header.
        public var tokens: (any TokenSource)?
        /// The header a trusted reverse proxy names the user in (`X-Remote-User`); off when nil.
        public var trustedProxyHeader: String?
        /// The data dir of the store (the logs of its services); nil: no logs here.
        public var dataDirectory: String?
        /// What submits and cancels jobs: the mount's runner (`mount --web`), or one that only records them.
        public var jobs: JobService?
        /// Stop on SIGINT and SIGTERM (`modelfs web`); a mount stops it by cancelling its task instead.
        public var stopsOnSignals = true
        public init() {}
    }

    let api: API
    let options: Options
    let logger: Logger

    public init(registry: Registry, options: Options, logger: Logger) {
        api = API(registry: registry, jobs: options.jobs, dataDirectory: options.dataDirectory)
        self.options = options
        self.logger = logger
    }

    /// Whether `name` can be a header's name (for `--trust-proxy-header`).
    public static func isHeaderName(_ name: String) -> Bool { HTTPField.Name(name) != nil }

    /// Every route the server has (`GET /api/v1/models`…): what the OpenAPI document must describe.
    public static var routes: [(method: String, path: String)] {
        router { _, _, _ in Response(status: .ok) }.routes.map { ($0.method.rawValue, $0.path.description) }
    }

    /// Serves until SIGINT or SIGTERM.
    public func run() async throws {
        let address = "http://\(options.host.contains(":") ? "[\(options.host)]" : options.host):\(options.port)"
        // Sessions live in the catalog: every server of a shared catalog knows them, and a
        // restart keeps them.
        let sessions = try Sessions(catalog: api.registry.catalog)
        let app = Application(router: router(sessions: sessions), server: .http1(configuration: .init(additionalChannelHandlers: [ContinueHandler()])),
                              configuration: .init(address: .hostname(options.host, port: options.port), serverName: "modelfs"),
                              onServerRunning: { _ in FileHandle.standardError.write(Data("modelfs web: serving \(address)/api/v1\n".utf8)) },
                              logger: logger)
        try await app.runService(gracefulShutdownSignals: options.stopsOnSignals ? [.sigterm, .sigint] : [])
    }

    func router(sessions: Sessions) -> Router<WebContext> {
        let auth = Authentication(tokens: options.tokens, trustedHeader: options.trustedProxyHeader.flatMap { HTTPField.Name($0) },
                                  sessions: sessions)
        let api = api
        let router = Self.router { request, context, endpoint in await Self.answer(request, context, api, endpoint, auth) }
        Pages(api: api, auth: auth).register(on: router)
        return router
    }

    /// The routes, each answered by `respond`.
    static func router(_ respond: @escaping @Sendable (Request, WebContext, API.Endpoint) async -> Response) -> Router<WebContext> {
        let router = Router(context: WebContext.self)
        router.add(middleware: NoSuchRoute())
        router.get("/health") { _, _ in Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        // The process's metrics for Prometheus (catalog latency, jobs and services by state…).
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: Telemetry.contentType], body: .init(byteBuffer: ByteBuffer(string: Telemetry.exposition())))
        }
        router.get("/api/v1/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: OpenAPI.document)))
        }
        for endpoint in API.endpoints {
            router.on(RouterPath(endpoint.path), method: endpoint.method) { request, context in await respond(request, context, endpoint) }
        }
        return router
    }

    /// Who asks, the body, the call off the event loop (the catalog blocks), and its answer or error as JSON.
    static func answer(_ request: Request, _ context: WebContext, _ api: API, _ endpoint: API.Endpoint,
                       _ auth: Authentication) async -> Response {
        var request = request
        do {
            let user: WebUser?
            do { user = try auth.user(of: request, peerIsLoopback: context.peerIsLoopback, writing: endpoint.method != .get) } catch {
                if endpoint.streamed != nil { await API.discard(request.body) }  // an upload refused: read to its end, answered
                throw error
            }
            let body = endpoint.method == .get || endpoint.streamed != nil ? [] : Array(buffer: try await request.collectBody(upTo: API.maximumBody))
            var parameters: [String: String] = [:]
            for name in endpoint.parameters {
                let raw = context.parameters.get(name) ?? ""
                parameters[name] = raw.removingPercentEncoding ?? raw
            }
            var query: [String: String] = [:]
            for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
            let call = API.Call(parameters: parameters, query: query, body: body, user: user, range: request.headers[.range], headers: request.headers)
            let (status, value) = if let streamed = endpoint.streamed { try await streamed(api, call, request.body) } else {
                try await offloaded { try endpoint.handler(api)(call) }
            }
            if let raw = value as? any OwnResponse { return raw.response() }
            return json(status, value)
        } catch let e as WebError {
            return json(e.status, ErrorBody(e))
        } catch let e as StoreError {
            return json(WebError(e).status, ErrorBody(WebError(e)))
        } catch {
            // collectBody's limit, a connection gone: nothing of the request is echoed.
            return json(.badRequest, ErrorBody(WebError(.badRequest, "the request could not be read (bodies are at most \(API.maximumBody) bytes)")))
        }
    }

    struct ErrorBody: Encodable {
        struct Detail: Encodable { var message: String; var errno: String? }
        var error: Detail
        init(_ e: WebError) { error = Detail(message: e.message, errno: e.errno) }
    }

    static func json(_ status: HTTPResponse.Status, _ value: any Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// A path or method the API does not have: a JSON error too (Hummingbird's own is an empty 404).
struct NoSuchRoute: RouterMiddleware {
    func handle(_ request: Request, context: WebContext, next: (Request, WebContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as HTTPError where e.status == .notFound {
            return WebServer.json(.notFound, WebServer.ErrorBody(WebError(.notFound, "no \(request.method) \(request.uri.path) here: see /api/v1/openapi.json")))
        }
    }
}

/// Runs `body` on a thread of its own: catalog calls block (SQLite, PostgreSQL, object deletes).
func offloaded<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// A request's context: where it came from, for "reads from loopback need no user".
public struct WebContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let peerIsLoopback: Bool

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peerIsLoopback = WebContext.isLoopback(source.channel.remoteAddress)
    }

    static func isLoopback(_ address: SocketAddress?) -> Bool {
        switch address {
        case .v4?: return address?.ipAddress?.hasPrefix("127.") ?? false
        case .v6?: let ip = address?.ipAddress ?? ""; return ip == "::1" || ip.hasPrefix("::ffff:127.")
        case .unixDomainSocket?: return true
        case nil: return false
        }
    }
}

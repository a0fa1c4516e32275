import Foundation
import HTTPTypes
import Hummingbird
import ModelStore
import NIOCore

/// The HTML pages (docs/WEB.md): rendered on the server from the same reads the JSON API answers
/// with (``API``'s rows over the one port), with a little plain JavaScript (``Assets``) that
/// makes every change through the JSON API, with the page's CSRF token.
struct Pages: Sendable {
    let api: API
    let auth: Authentication

    /// Rows a page shows at once; the rest come a page at a time ("More").
    static let pageSize = 100

    func register(on router: Router<WebContext>) {
        router.get("/static/app.js") { _, _ in HTML.respond(.ok, Assets.script, type: "text/javascript; charset=utf-8") }
        router.get("/static/app.css") { _, _ in HTML.respond(.ok, Assets.style, type: "text/css; charset=utf-8") }
        router.get("/login") { request, context in await self.serve(request, context, self.loginPage) }
        router.post("/login") { request, context in await self.login(request, context) }
        router.post("/logout") { request, context in await self.logout(request, context) }
        let pages: [(String, @Sendable (Request, WebContext, Viewer) throws -> Response)] = [
            ("/", modelList), ("/fragments/models", modelRows),
            ("/models/{model}", modelPage), ("/fragments/models/{model}/versions", versionRows),
            ("/models/{model}/compare", comparePage), ("/models/{model}/train", trainPage),
            ("/import", importPage), ("/models/{model}/add", addVersionPage),
            ("/jobs", jobsPage), ("/jobs/{job}", jobPage), ("/services", servicesPage),
        ]
        for (path, render) in pages {
            router.get(RouterPath(path)) { request, context in await self.serve(request, context, render) }
        }
    }

    /// Who looks (a read from another host needs a user, as for the API), then the page off the
    /// event loop (the catalog blocks); a store error is a page with its message and status.
    func serve(_ request: Request, _ context: WebContext, _ render: @escaping @Sendable (Request, WebContext, Viewer) throws -> Response) async -> Response {
        let viewer: Viewer
        do {
            let asker = try auth.asker(of: request)
            if asker == nil && !context.peerIsLoopback && request.uri.path != "/login" {
                return HTML.respond(.seeOther, "", headers: [.location: "/login?next=" + HTML.query(request.uri.description)])
            }
            viewer = Viewer(user: asker?.user, csrf: asker.map(auth.csrfToken(of:)))
        } catch {
            return errorPage(error, .nobody)
        }
        do {
            return try await offloaded { try render(request, context, viewer) }
        } catch {
            return errorPage(error, viewer)
        }
    }

    func errorPage(_ error: any Error, _ viewer: Viewer) -> Response {
        let e = (error as? WebError) ?? (error as? StoreError).map(WebError.init) ?? WebError(.internalServerError, "\(error)")
        var response = HTML.page("Refused", viewer, "<h1>\(e.status.code) \(HTML.escape(e.status.reasonPhrase))</h1><p class=\"error\">\(HTML.escape(e.message))</p>")
        response.status = e.status
        return response
    }

    // MARK: Login

    func loginPage(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        try loginForm(next: Pages.query(request, "next") ?? "/", viewer, message: nil)
    }

    func loginForm(next: String, _ viewer: Viewer, message: String?) throws -> Response {
        HTML.page("Sign in", viewer, """
            <h1>Sign in</h1>
            <p>Paste your token (a line of the server's tokens file). It is kept by no page: the server \
            answers with a session cookie only it can read.</p>
            \(message.map { "<p class=\"error\" role=\"alert\">\(HTML.escape($0))</p>" } ?? "")
            <form method="post" action="/login" class="card form">
            <input type="hidden" name="next" value="\(HTML.escape(Pages.localPath(next)))">
            <label>Token <input type="password" name="token" autocomplete="off" required autofocus></label>
            <button type="submit">Sign in</button></form>
            """)
    }

    /// A form's fields (`application/x-www-form-urlencoded`).
    static func formFields(_ request: inout Request) async -> [String: String] {
        guard let body = try? await request.collectBody(upTo: 64 << 10) else { return [:] }
        var components = URLComponents()
        components.percentEncodedQuery = String(buffer: body).replacingOccurrences(of: "+", with: "%20")
        var fields: [String: String] = [:]
        for item in components.queryItems ?? [] { fields[item.name] = item.value ?? "" }
        return fields
    }

    /// Only a path of this site: a login never sends a browser elsewhere.
    static func localPath(_ next: String) -> String {
        next.hasPrefix("/") && !next.hasPrefix("//") && !next.contains("\\") ? next : "/"
    }

    /// A form posted from another site (`Origin` names another host) is refused: no one can sign
    /// a browser in as someone else.
    static func isCrossSite(_ request: Request) -> Bool {
        guard let origin = request.headers[.origin] else { return false }
        guard let host = request.head.authority else { return true }
        return URL(string: origin).map { url in url.host.map { $0 + (url.port.map { ":\($0)" } ?? "") } != host } ?? true
    }

    /// Whether the browser reached a TLS proxy in front (`X-Forwarded-Proto: https`): its session
    /// cookie is then `Secure`, never sent over plain HTTP. A client that claims it falsely only
    /// keeps its own cookie off plain HTTP.
    static func cameOverTLS(_ request: Request) -> Bool {
        request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
    }

    func login(_ request: Request, _ context: WebContext) async -> Response {
        var request = request
        guard !Pages.isCrossSite(request) else { return errorPage(WebError(.forbidden, "a sign-in from another site is refused"), .nobody) }
        let fields = await Pages.formFields(&request)
        let next = Pages.localPath(fields["next"] ?? "/")
        do throws(WebError) {
            let id = try auth.signIn(token: (fields["token"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines))
            return HTML.respond(.seeOther, "", headers: [.location: next, .setCookie: Sessions.cookie(id, secure: Pages.cameOverTLS(request))])
        } catch {
            var response = (try? loginForm(next: next, .nobody, message: error.message)) ?? HTML.respond(error.status, error.message)
            response.status = error.status  // 401 for a token not in the file; the catalog's own when it fails
            return response
        }
    }

    func logout(_ request: Request, _ context: WebContext) async -> Response {
        var request = request
        let fields = await Pages.formFields(&request)
        do throws(WebError) {
            if let asker = try auth.asker(of: request), case .session(let id) = asker.means {
                try auth.checkCSRF(fields["csrf"], of: asker)
                try auth.sessions.close(id)
            }
        } catch {
            return errorPage(error, .nobody)
        }
        return HTML.respond(.seeOther, "", headers: [.location: "/", .setCookie: Sessions.cookie("", secure: Pages.cameOverTLS(request))])
    }

    // MARK: Reading a request

    static func query(_ request: Request, _ name: String) -> String? {
        // Hummingbird decodes the percent-escapes of query values.
        request.uri.queryParameters[Substring(name)].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
    }

    static func parameter(_ context: WebContext, _ name: String) -> String {
        let raw = context.parameters.get(name) ?? ""
        return raw.removingPercentEncoding ?? raw
    }

    /// A call of a JSON API handler as the viewer: a page shows what the API answers them, with its rules.
    static func call(_ viewer: Viewer, _ parameters: [String: String] = [:], _ query: [String: String] = [:]) -> API.Call {
        API.Call(parameters: parameters, query: query, body: [], user: viewer.user)
    }

    /// What an API handler answered, as the rows it is made of.
    static func rows<Row>(_ answer: API.Answer, _ type: Row.Type = Row.self) throws -> Row {
        guard let rows = answer.1 as? Row else { throw WebError(.internalServerError, "the API answered with \(Swift.type(of: answer.1)), not \(Row.self)") }
        return rows
    }

    /// One page of a list as the API pages it (`limit`, `after`): its rows, and the last one's name when more follow.
    static func listed<Row: Encodable & Sendable>(_ answer: API.Answer, name: (Row) -> String) throws -> (rows: [Row], next: String?) {
        let page = try rows(answer, API.Page<Row>.self)
        return (page.items, page.next == nil ? nil : page.items.last.map(name))
    }

    /// One page of `rows` after the one named `after` (in their order), and the name to ask the next after.
    static func page<T>(_ rows: [T], after: String?, name: (T) -> String) -> (rows: ArraySlice<T>, next: String?) {
        var start = rows.startIndex
        // A row deleted since the page was drawn: the next in name order (lists in name order).
        if let after { start = rows.firstIndex { name($0) == after }.map { $0 + 1 } ?? rows.firstIndex { name($0) > after } ?? rows.endIndex }
        let end = min(start + pageSize, rows.endIndex)
        return (rows[start..<end], end < rows.endIndex ? name(rows[end - 1]) : nil)
    }

    /// A fragment of rows for a "More" button (and the search box): `X-Next-After` names the last row when more follow.
    static func fragment(_ text: String, next: String?) -> Response {
        var headers: HTTPFields = [:]
        if let next { headers[HTTPField.Name("X-Next-After")!] = next.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? next }
        return HTML.respond(.ok, text, headers: headers)
    }

    static func more(_ id: String, from url: String, next: String?) -> String {
        "<p><button type=\"button\" class=\"more\" id=\"\(id)\" data-url=\"\(HTML.escape(url))\" data-after=\"\(HTML.escape(next ?? ""))\"\(next == nil ? " hidden" : "")>More</button></p>"
    }
}

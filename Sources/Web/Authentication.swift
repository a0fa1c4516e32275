import Foundation
import HTTPTypes
import Hummingbird
import ModelStore

/// Who asks: a bearer token from the tokens file, a browser's session cookie (made by `/login`
/// from such a token), or (only when the operator trusts a reverse proxy) the user that proxy
/// names in its header. Reads from loopback need nobody; writes, and reads from elsewhere, need a
/// user (401 otherwise). A browser sends its cookie and goes through its proxy whichever site
/// made the request, so a write it authenticates must also carry the page's CSRF token (403
/// otherwise); a bearer token is sent only by a client that holds it, so it needs none. A token
/// is never logged nor echoed.
struct Authentication: Sendable {
    let tokens: Tokens?
    let trustedHeader: HTTPField.Name?
    let sessions: Sessions

    init(tokens: Tokens?, trustedHeader: HTTPField.Name?, sessions: Sessions = Sessions()) {
        self.tokens = tokens; self.trustedHeader = trustedHeader; self.sessions = sessions
    }

    static let csrfHeader = HTTPField.Name("X-CSRF-Token")!

    /// A user and how the request named them.
    struct Asker: Sendable, Equatable {
        enum Means: Sendable, Equatable { case bearer, proxy, session(String) }
        var user: WebUser
        var means: Means

        /// What a browser sends on its own, whichever page asks: a write needs the CSRF token too.
        var isAmbient: Bool { means != .bearer }
    }

    func user(of request: Request, peerIsLoopback: Bool, writing: Bool) throws(WebError) -> WebUser? {
        let asker = try asker(of: request)
        if asker == nil && (writing || !peerIsLoopback) {
            let how = [tokens != nil ? "an Authorization: Bearer token (or a session from /login)" : nil,
                       trustedHeader.map { "the \($0) header of the proxy" }]
                .compactMap { $0 }.joined(separator: " or ")
            throw WebError.unauthorized(writing
                ? "a change needs a user: \(how.isEmpty ? "this server has no tokens file (--tokens) and trusts no proxy header" : how)"
                : "reads from another host than this one need a user: \(how.isEmpty ? "this server knows none" : how)")
        }
        if writing, let asker, asker.isAmbient {
            try checkCSRF(request.headers[Self.csrfHeader], of: asker)
        }
        return asker?.user
    }

    /// Refuses a browser's write without the token its page embeds (`X-CSRF-Token` or a form's `csrf` field).
    func checkCSRF(_ given: String?, of asker: Asker) throws(WebError) {
        guard let given, Tokens.same(Array(given.utf8), Array(csrfToken(of: asker).utf8)) else {
            throw WebError(.forbidden, given == nil
                ? "a change from a browser needs the X-CSRF-Token header of its page (reload the page and try again)"
                : "the X-CSRF-Token does not match this session (reload the page and try again)")
        }
    }

    /// The token a page embeds for its writes: a keyed hash of the session (or of the proxy's
    /// user), so that no other site can know it and a new session or process changes it.
    func csrfToken(of asker: Asker) -> String {
        switch asker.means {
        case .session(let id): return sessions.sign("csrf session \(id)")
        case .proxy, .bearer: return sessions.sign("csrf user \(asker.user.uid) \(asker.user.name)")
        }
    }

    func asker(of request: Request) throws(WebError) -> Asker? {
        if let authorization = request.headers[.authorization] {
            return Asker(user: try bearer(authorization), means: .bearer)
        }
        if let trustedHeader, let name = request.headers[trustedHeader] {
            guard let user = WebUser.resolve(name.trimmingCharacters(in: .whitespaces)) else {
                throw WebError.unauthorized("\(trustedHeader) names no user of this machine")
            }
            return Asker(user: user, means: .proxy)
        }
        // A cookie that names no live session (expired, from before a restart) is no one.
        if let id = Sessions.id(inCookies: request.headers[values: .cookie]), let user = sessions.user(of: id) {
            return Asker(user: user, means: .session(id))
        }
        return nil
    }

    private func bearer(_ authorization: String) throws(WebError) -> WebUser {
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw WebError.unauthorized("the Authorization header is not 'Bearer TOKEN'")
        }
        return try user(ofToken: String(parts[1]).trimmingCharacters(in: .whitespaces))
    }

    /// The user of a token of the tokens file: a bearer's, or one pasted into `/login`.
    func user(ofToken token: String) throws(WebError) -> WebUser {
        guard let user = tokens?.user(for: token) else {
            throw WebError.unauthorized(tokens == nil ? "this server has no tokens file (--tokens)" : "the token is not in this server's tokens file")
        }
        return user
    }
}

/// The browser sessions of this process: a random id in an HttpOnly, SameSite=Strict cookie names
/// a user who logged in with a token; the token itself is kept nowhere. Sessions end after
/// ``lifetime``, at logout, or when the process stops (the secret that signs CSRF tokens goes too).
final class Sessions: Sendable {
    static let cookieName = "modelfs_session"
    static let lifetime: TimeInterval = 12 * 3600

    private let secret: [UInt8]
    private let live = Locked<[String: (user: WebUser, expires: Date)]>([:])

    init(secret: [UInt8] = Sessions.random(32)) { self.secret = secret }

    static func random(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// HMAC-SHA256 of `message` with this process's secret, in hex.
    func sign(_ message: String) -> String { Digest.hex(Digest.hmacSHA256(key: secret, message)) }

    /// A new session for `user`: its id, for the cookie.
    func open(for user: WebUser, now: Date = Date()) -> String {
        let id = Digest.hex(Sessions.random(32))
        live.withLock { table in
            table = table.filter { $0.value.expires > now }
            table[id] = (user, now + Sessions.lifetime)
        }
        return id
    }

    func user(of id: String, now: Date = Date()) -> WebUser? {
        live.withLock { table in table[id].flatMap { $0.expires > now ? $0.user : nil } }
    }

    func close(_ id: String) { live.withLock { _ = $0.removeValue(forKey: id) } }

    /// The `Set-Cookie` of a session (an empty id: the one that ends it in the browser); `secure`
    /// behind a TLS proxy.
    static func cookie(_ id: String, secure: Bool = false) -> String {
        Cookie(name: cookieName, value: id, maxAge: id.isEmpty ? 0 : Int(lifetime), path: "/", secure: secure, httpOnly: true,
               sameSite: .strict).description
    }

    /// The session id among a request's `Cookie` headers.
    static func id(inCookies headers: [String]) -> String? {
        guard let value = Cookies(from: headers)[cookieName]?.value, !value.isEmpty else { return nil }
        return value
    }
}

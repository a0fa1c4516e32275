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
/// is never logged nor echoed. The tokens are the file's as it is now: a token removed from it
/// stops working, and so do the sessions signed in with it.
struct Authentication: Sendable {
    let tokens: (any TokenSource)?
    let trustedHeader: HTTPField.Name?
    let sessions: Sessions
    /// The current tokens' users by mark, for the reading of the file they were computed for.
    private let marks = Locked<(serial: Int, users: [String: WebUser])>((0, [:]))

    init(tokens: (any TokenSource)?, trustedHeader: HTTPField.Name?, sessions: Sessions = Sessions()) {
        self.tokens = tokens; self.trustedHeader = trustedHeader; self.sessions = sessions
    }

    /// The tokens now; a changed file that is refused refuses every token (and session) until fixed.
    private func currentTokens() throws(WebError) -> Tokens? {
        guard let tokens else { return nil }
        do { return try tokens.current() } catch {
            throw WebError(.serviceUnavailable, "tokens are refused until the tokens file is fixed: \(error)")
        }
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
    /// user), so that no other site can know it and a new session changes it.
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
        // A cookie that names no live session (expired, signed out, its token removed) is no one.
        if let id = Sessions.id(inCookies: request.headers[values: .cookie]), let session = try sessions.session(of: id),
           try stillHolds(session) {
            return Asker(user: session.user, means: .session(id))
        }
        return nil
    }

    /// Whether the token `session` was signed in with is still in the tokens file, for its user.
    private func stillHolds(_ session: Session) throws(WebError) -> Bool {
        guard let tokens = try currentTokens() else { return false }
        let users = marks.withLock { marks in
            if marks.serial != tokens.serial { marks = (tokens.serial, tokens.users(byMark: sessions.mark(ofToken:))) }
            return marks.users
        }
        return users[session.tokenMark] == session.user
    }

    private func bearer(_ authorization: String) throws(WebError) -> WebUser {
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw WebError.unauthorized("the Authorization header is not 'Bearer TOKEN'")
        }
        return try user(ofToken: String(parts[1]).trimmingCharacters(in: .whitespaces))
    }

    /// A new session signed in with `token` (pasted into `/login`): its id, for the cookie.
    func signIn(token: String) throws(WebError) -> String {
        try sessions.open(for: try user(ofToken: token), tokenMark: sessions.mark(ofToken: token))
    }

    /// The user of a token of the tokens file: a bearer's, or one pasted into `/login`.
    func user(ofToken token: String) throws(WebError) -> WebUser {
        guard let user = try currentTokens()?.user(for: token) else {
            throw WebError.unauthorized(tokens == nil ? "this server has no tokens file (--tokens)" : "the token is not in this server's tokens file")
        }
        return user
    }
}

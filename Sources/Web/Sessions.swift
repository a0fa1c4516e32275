import Catalog
import Foundation
import Hummingbird
import ModelStore

/// Browser sessions: a random id in an HttpOnly, SameSite=Strict cookie names a user who logged
/// in with a token; the token itself is kept nowhere, only its mark (``mark(ofToken:)``), which
/// ends the session when the token leaves the tokens file. Sessions end after ``lifetime`` or at
/// logout. Where they are kept is a ``SessionStorage``: the catalog for a server (every server
/// of a shared catalog knows them, and a restart keeps them), this process for tests.
final class Sessions: Sendable {
    static let cookieName = "modelfs_session"
    static let lifetime: TimeInterval = 12 * 3600

    private let secret: [UInt8]
    private let storage: any SessionStorage

    init(storage: any SessionStorage = ProcessSessions(), secret: [UInt8] = Sessions.random(32)) {
        self.storage = storage
        self.secret = secret
    }

    /// The sessions of the servers on `catalog`, signing with the secret they share.
    convenience init(catalog: Catalog) throws(StoreError) {
        let secret = try catalog.webSecret(orKeep: Digest.hex(Sessions.random(32)))
        self.init(storage: CatalogSessions(catalog: catalog), secret: Array(secret.utf8))
    }

    static func random(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// HMAC-SHA256 of `message` with the servers' secret, in hex.
    func sign(_ message: String) -> String { Digest.hex(Digest.hmacSHA256(key: secret, message)) }

    /// What a session keeps of the token it was signed in with: a keyed hash, the same on every
    /// server of the catalog.
    func mark(ofToken token: String) -> String { sign("session token \(token)") }

    /// A new session for `user`, signed in with the token of `tokenMark`: its id, for the cookie.
    func open(for user: WebUser, tokenMark: String, now: Date = Date()) throws(WebError) -> String {
        let id = Digest.hex(Sessions.random(32))
        try answer { () throws(StoreError) in
            try storage.open(Self.key(id), Session(user: user, tokenMark: tokenMark), expires: now + Sessions.lifetime, now: now)
        }
        return id
    }

    func session(of id: String, now: Date = Date()) throws(WebError) -> Session? {
        try answer { () throws(StoreError) in try storage.session(Self.key(id), now: now) }
    }

    func close(_ id: String) throws(WebError) {
        try answer { () throws(StoreError) in try storage.close(Self.key(id)) }
    }

    /// The storage's failure (the catalog unreachable) as the answer's status.
    private func answer<T>(_ body: () throws(StoreError) -> T) throws(WebError) -> T {
        do { return try body() } catch { throw WebError(error) }
    }

    /// What a session is kept under: its id's SHA-256, so the storage holds no id to send.
    static func key(_ id: String) -> String { Digest.hex(Digest.sha256(id)) }

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

/// Who a session is, and the mark of the token it was signed in with.
struct Session: Sendable, Equatable {
    var user: WebUser
    var tokenMark: String
}

/// Where sessions are kept, each under its key (``Sessions/key(_:)``).
protocol SessionStorage: Sendable {
    func open(_ key: String, _ session: Session, expires: Date, now: Date) throws(StoreError)
    /// A session that has not ended by `now`.
    func session(_ key: String, now: Date) throws(StoreError) -> Session?
    func close(_ key: String) throws(StoreError)
}

/// In the catalog: shared by every web server on it, and kept across restarts.
struct CatalogSessions: SessionStorage {
    let catalog: Catalog

    func open(_ key: String, _ session: Session, expires: Date, now: Date) throws(StoreError) {
        let user = session.user
        try catalog.openWebSession(idHash: key, user: WebSessionUser(name: user.name, uid: user.uid, gid: user.gid, tokenMark: session.tokenMark),
                                   expires: expires, now: now)
    }

    func session(_ key: String, now: Date) throws(StoreError) -> Session? {
        try catalog.webSession(idHash: key, now: now).map { Session(user: WebUser(name: $0.name, uid: $0.uid, gid: $0.gid), tokenMark: $0.tokenMark) }
    }

    func close(_ key: String) throws(StoreError) { try catalog.closeWebSession(idHash: key) }
}

/// In this process only (tests): gone when it stops.
final class ProcessSessions: SessionStorage {
    private let live = Locked<[String: (session: Session, expires: Date)]>([:])

    func open(_ key: String, _ session: Session, expires: Date, now: Date) {
        live.withLock { table in
            table = table.filter { $0.value.expires > now }
            table[key] = (session, expires)
        }
    }

    func session(_ key: String, now: Date) -> Session? {
        live.withLock { table in table[key].flatMap { $0.expires > now ? $0.session : nil } }
    }

    func close(_ key: String) { live.withLock { _ = $0.removeValue(forKey: key) } }
}

import Foundation
import ModelStore

/// Who a browser session of a web server is (`/login` made it from a token of the tokens file),
/// and the mark of that token (a keyed hash: the session ends when the token leaves the file).
public struct WebSessionUser: Sendable, Equatable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32
    public var tokenMark: String
    public init(name: String, uid: UInt32, gid: UInt32, tokenMark: String) {
        self.name = name; self.uid = uid; self.gid = gid; self.tokenMark = tokenMark
    }
}

/// The browser sessions of the web servers on this catalog, shared by all of them and kept across
/// restarts; and the secret they sign CSRF tokens with. A session is found by the SHA-256 of its
/// cookie's id: whoever reads the catalog finds no id a browser could send.
extension Catalog {
    /// The web servers' signing secret: `fresh` if none was kept yet, else the one every server
    /// of this catalog already uses.
    public func webSecret(orKeep fresh: String) throws(StoreError) -> String {
        try database.write { db in
            try db.execute("INSERT INTO catalog_meta (key, value) VALUES ('web_secret', ?) ON CONFLICT (key) DO NOTHING",
                           [.text(fresh)])
            return try db.first("SELECT value FROM catalog_meta WHERE key = 'web_secret'", [], { $0.text(0) }) ?? fresh
        }
    }

    /// Records a new session until `expires`, dropping the ones that ended before `now`.
    public func openWebSession(idHash: String, user: WebSessionUser, expires: Date, now: Date = Date()) throws(StoreError) {
        try database.write { db in
            try db.execute("DELETE FROM web_sessions WHERE expires <= ?", [.date(now)])
            try db.execute("INSERT INTO web_sessions (id_hash, user_name, uid, gid, expires, token_mark) VALUES (?, ?, ?, ?, ?, ?)",
                           [.text(idHash), .text(user.name), .int(Int64(user.uid)), .int(Int64(user.gid)), .date(expires),
                            .text(user.tokenMark)])
        }
    }

    /// The user of a session that has not ended by `now`; nil for any other.
    public func webSession(idHash: String, now: Date = Date()) throws(StoreError) -> WebSessionUser? {
        try database.read { db in
            try db.first("SELECT user_name, uid, gid, token_mark FROM web_sessions WHERE id_hash = ? AND expires > ?",
                         [.text(idHash), .date(now)]) { row in
                WebSessionUser(name: row.text(0), uid: UInt32(truncatingIfNeeded: row.int(1)), gid: UInt32(truncatingIfNeeded: row.int(2)),
                               tokenMark: row.text(3))
            }
        }
    }

    /// Ends a session (logout) on every server at once.
    public func closeWebSession(idHash: String) throws(StoreError) {
        try database.write { db in try db.execute("DELETE FROM web_sessions WHERE id_hash = ?", [.text(idHash)]) }
    }
}

import Foundation
import Testing
@testable import Catalog
import ModelStore

/// The web servers' sessions and signing secret, on every engine: kept by hash, shared by every
/// connection to the catalog, ended at their time or at logout.
extension CatalogCases {
    func webSessionsAreSharedEndAtTheirTimeAndTheSecretIsMadeOnce() throws {
        let other = try place.open()  // another server on the same catalog
        let secret = try catalog.webSecret(orKeep: "first")
        let again = try other.webSecret(orKeep: "second")
        #expect(secret == "first" && again == "first", "made once, then the same for all")

        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let eve = WebSessionUser(name: "eve", uid: 4242, gid: 100, tokenMark: "mark-of-eves-token")
        try catalog.openWebSession(idHash: "h1", user: eve, expires: now + 60, now: now)
        #expect(try other.webSession(idHash: "h1", now: now + 1) == eve, "with the mark of the token it was signed in with")
        #expect(try other.webSession(idHash: "h1", now: now + 61) == nil, "ended at its time")
        #expect(try other.webSession(idHash: "h2", now: now) == nil)
        // Opening a session drops the ones already ended; a logout ends one on every connection.
        try other.openWebSession(idHash: "h2", user: WebSessionUser(name: "bob", uid: 1001, gid: 1001, tokenMark: ""), expires: now + 200, now: now + 100)
        let rows = try catalog.database.read { db in try db.query("SELECT id_hash FROM web_sessions", []) { $0.text(0) } }
        #expect(rows == ["h2"], "\(rows)")
        try catalog.closeWebSession(idHash: "h2")
        #expect(try other.webSession(idHash: "h2", now: now + 101) == nil)
    }
}

extension CatalogConformance {
    @Test(arguments: Backend.all) func webSessionsAreSharedEndAtTheirTimeAndTheSecretIsMadeOnce(_ backend: Backend) throws {
        try CatalogCases(backend).webSessionsAreSharedEndAtTheirTimeAndTheSecretIsMadeOnce()
    }
}

import Foundation
import Testing
@testable import Catalog
import ModelStore
import TestSupport

/// The catalog engines the conformance suite runs on: SQLite always, PostgreSQL when a test
/// server is given (`MODELFS_TEST_PG_URL`, which `scripts/test` starts); with
/// `MODELFS_REQUIRE_PG=1` a missing server fails the run instead of skipping PostgreSQL.
enum Backend: String, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    var testDescription: String { rawValue }

    static let serverURL: String? = {
        let env = ProcessInfo.processInfo.environment
        if let url = env["MODELFS_TEST_PG_URL"], !url.isEmpty { return url }
        return env["MODELFS_REQUIRE_PG"] == "1" ? "postgresql://modelfs@127.0.0.1:1/missing" : nil
    }()

    static var all: [Backend] { serverURL == nil ? [.sqlite] : [.sqlite, .postgres] }
}

/// Where one test's catalog lives: a new SQLite file, or a new PostgreSQL database, dropped
/// afterwards. ``open()`` gives another connection to the same catalog, as a second process (on
/// SQLite) or a second node (on PostgreSQL) would have.
final class CatalogPlace: @unchecked Sendable {
    let backend: Backend
    let location: String
    private let dir: String
    private let database: String

    init(_ backend: Backend) throws {
        self.backend = backend
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let database = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        self.database = database
        switch backend {
        case .sqlite:
            location = dir + "/catalog.sqlite"
        case .postgres:
            let server = try #require(Backend.serverURL)
            try Self.admin(server) { try $0.execute("CREATE DATABASE \(database)") }
            location = Self.url(server, database: database)
        }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: dir)
        if backend == .postgres, let server = Backend.serverURL {
            let name = database
            try? Self.admin(server) { try $0.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
        }
    }

    /// The statement sites every catalog opened here ran (``StatementCoverage``).
    private let opened = Locked<[SQLSites]>([])
    var reached: Set<SQLSite> { opened.withLock { $0.reduce(into: Set()) { $0.formUnion($1.reached) } } }
    private func track(_ c: Catalog) -> Catalog {
        opened.withLock { $0.append(c.database.sites) }
        return c
    }

    func open() throws -> Catalog { track(try Catalog.open(location)) }

    /// Another file next to this one (SQLite), or another database (PostgreSQL): another catalog.
    func other(_ name: String) throws -> Catalog {
        switch backend {
        case .sqlite: return track(try Catalog(path: dir + "/" + name))
        case .postgres:
            let server = try #require(Backend.serverURL)
            let db = database + "_" + name.filter { $0.isLetter || $0.isNumber }
            try Self.admin(server) { try $0.execute("CREATE DATABASE \(db)") }
            return track(try Catalog.open(Self.url(server, database: db)))
        }
    }

    /// The server URL with its database replaced.
    static func url(_ server: String, database: String) -> String { SharedCatalog.url(server, database: database) }

    static func admin(_ server: String, _ body: (Connection) throws -> Void) throws {
        let engine = try PostgresEngine(url: try #require(PostgresURL(server)), poolSize: 1)
        defer { engine.close() }
        try engine.read { try body($0) }
    }
}

import Foundation
import Testing
import Catalog
import ModelStore

/// A catalog engine a suite runs on: SQLite always, PostgreSQL when `MODELFS_TEST_PG_URL` names a
/// server (`scripts/test` starts one); `MODELFS_REQUIRE_PG=1` makes a missing server a failure
/// instead of a skip. Tests take `Engine.all` as their arguments.
public enum Engine: String, Sendable, CustomStringConvertible {
    case sqlite, postgres

    public var description: String { rawValue }

    public static let serverURL: String? = {
        let env = ProcessInfo.processInfo.environment
        if let url = env["MODELFS_TEST_PG_URL"], !url.isEmpty { return url }
        return env["MODELFS_REQUIRE_PG"] == "1" ? "postgresql://modelfs@127.0.0.1:1/missing" : nil
    }()

    public static var all: [Engine] { serverURL == nil ? [.sqlite] : [.sqlite, .postgres] }
}

/// How many rounds a race test runs: `MODELFS_RACE_ROUNDS` (50 for the soak the issue asks for),
/// else `quick`, so that CI stays fast.
public func raceRounds(quick: Int = 3) -> Int {
    ProcessInfo.processInfo.environment["MODELFS_RACE_ROUNDS"].flatMap(Int.init).map { max($0, 1) } ?? quick
}

/// One test's catalog: a new SQLite file or a new PostgreSQL database, removed afterwards. Each
/// ``open()`` is another connection to it, as a second process (SQLite) or node (PostgreSQL) has.
public final class SharedCatalog: @unchecked Sendable {
    public let engine: Engine
    public let location: String
    public let dir: String
    private let database: String?

    public init(_ engine: Engine) throws {
        self.engine = engine
        dir = try temporaryDirectory("catalog")
        switch engine {
        case .sqlite:
            database = nil
            location = dir + "/catalog.sqlite"
        case .postgres:
            guard let server = Engine.serverURL else { throw StoreError(.io, "no PostgreSQL server (MODELFS_TEST_PG_URL)") }
            let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            try Self.admin(server, "CREATE DATABASE \(name)")
            database = name
            location = Self.url(server, database: name)
        }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: dir)
        if let database, let server = Engine.serverURL { try? Self.admin(server, "DROP DATABASE IF EXISTS \(database) WITH (FORCE)") }
    }

    /// The engine of another connection to this catalog.
    public func openEngine() throws -> any CatalogEngine {
        if let url = PostgresURL(location) { return try PostgresEngine(url: url, poolSize: 2) }
        return try SQLiteEngine(path: location)
    }

    /// Another connection to this catalog.
    public func open() throws -> Catalog { try Catalog(engine: try openEngine()) }

    /// `server` with its database replaced by `database`.
    public static func url(_ server: String, database: String) -> String {
        var base = server
        if let q = base.firstIndex(of: "?") { base = String(base[..<q]) }
        guard let scheme = base.range(of: "://"), let slash = base[scheme.upperBound...].firstIndex(of: "/") else {
            return base + "/" + database
        }
        return String(base[..<slash]) + "/" + database
    }

    private static func admin(_ server: String, _ statement: String) throws {
        guard let url = PostgresURL(server) else { throw StoreError(.invalidArgument, "not a PostgreSQL URL: \(server)") }
        let engine = try PostgresEngine(url: url, poolSize: 1)
        defer { engine.close() }
        try engine.read { try $0.execute(statement) }
    }
}

/// A catalog engine whose next write transaction can be held at its door: a race test lets one
/// node read what it acts on, holds it there, lets another node change the catalog, then lets it
/// go on. The interleaving is forced, not hoped for, so the test fails every time the race is there.
public final class GatedEngine: CatalogEngine, @unchecked Sendable {
    let inner: any CatalogEngine
    private let armed = Locked<Gate?>(nil)

    public init(_ inner: any CatalogEngine) { self.inner = inner }

    /// Holds the next write transaction until ``Gate/open()``.
    public func holdNextWrite() -> Gate {
        let gate = Gate()
        armed.withLock { $0 = gate }
        return gate
    }

    /// A door: the writer waits at it, the test waits for the writer to arrive.
    public final class Gate: Sendable {
        private let arrived = DispatchSemaphore(value: 0)
        private let opened = DispatchSemaphore(value: 0)
        private let reached = Locked(false)

        func pass() {
            reached.withLock { $0 = true }
            arrived.signal()
            opened.wait()
        }

        /// Waits until the writer is at the door; false when it did not come within `seconds`
        /// (the operation did not write, or wrote before the gate was armed).
        public func waitForWriter(seconds: Double = 30) -> Bool { arrived.wait(timeout: .now() + seconds) == .success }
        public var wasReached: Bool { reached.withLock { $0 } }
        public func open() { opened.signal() }
    }

    /// Runs `act` on a thread until its write transaction is at the door, then `meanwhile`, then
    /// lets `act` go on; returns what `act` returned or threw.
    public func race<T: Sendable>(_ act: @escaping @Sendable () throws -> T, meanwhile: () throws -> Void) throws -> Result<T, StoreError> {
        let gate = holdNextWrite()
        let result = Locked<Result<T, StoreError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let r: Result<T, StoreError>
            do { r = .success(try act()) } catch { r = .failure(error as? StoreError ?? StoreError(.io, "\(error)")) }
            result.withLock { $0 = r }
            done.signal()
        }
        guard gate.waitForWriter() else {
            gate.open()
            done.wait()
            Issue.record("the racing operation never wrote: \(String(describing: result.withLock { $0 }))")
            throw StoreError(.io, "no write to hold")
        }
        let changed = Result { try meanwhile() }
        gate.open()
        done.wait()
        try changed.get()
        return try #require(result.withLock { $0 })
    }

    public var location: String { inner.location }
    public var dialect: SQLDialect { inner.dialect }
    public var isShared: Bool { inner.isShared }
    public var clockSQL: String { inner.clockSQL }
    public var sites: SQLSites { inner.sites }

    @discardableResult
    public func read<T>(_ body: (Connection) throws -> T) throws(StoreError) -> T { try inner.read(body) }

    @discardableResult
    public func write<T>(_ body: (Connection) throws -> T) throws(StoreError) -> T {
        if let gate = armed.withLock({ g -> Gate? in defer { g = nil }; return g }) { gate.pass() }
        return try inner.write(body)
    }

    public func schemaVersion(_ db: Connection) throws -> Int { try inner.schemaVersion(db) }
    public func setSchemaVersion(_ db: Connection, _ version: Int) throws { try inner.setSchemaVersion(db, version) }
    public func integrityCheck() throws(StoreError) -> String { try inner.integrityCheck() }
    public func watchChanges(_ handler: @escaping @Sendable (String) -> Void) { inner.watchChanges(handler) }
    public func close() { inner.close() }
}

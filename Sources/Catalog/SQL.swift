import Foundation
import ModelStore

/// A value bound to, or read from, an SQL statement.
public enum SQLValue: Sendable, Equatable {
    case int(Int64)
    case double(Double)
    case text(String)
    case null

    static func optional(_ s: String?) -> SQLValue { s.map(SQLValue.text) ?? .null }
    static func optional(_ i: Int64?) -> SQLValue { i.map(SQLValue.int) ?? .null }
    static func date(_ d: Date) -> SQLValue { .double(d.timeIntervalSince1970) }
    static func int(_ id: some RowID) -> SQLValue { .int(id.rawValue) }
    static func optional(_ id: (some RowID)?) -> SQLValue { id.map { .int($0.rawValue) } ?? .null }
    static func text(_ id: JobID) -> SQLValue { .text(id.rawValue) }
    static func optional(_ id: JobID?) -> SQLValue { id.map { .text($0.rawValue) } ?? .null }
}

/// How an engine hands out the columns of the current row.
protocol RowCells {
    func int(_ i: Int32) -> Int64
    func double(_ i: Int32) -> Double
    func isNull(_ i: Int32) -> Bool
    func optionalText(_ i: Int32) -> String?
}

/// One row of a result, read by column index, whichever engine produced it.
public struct Row {
    let cells: any RowCells

    public func int(_ i: Int32) -> Int64 { cells.int(i) }
    public func double(_ i: Int32) -> Double { cells.double(i) }
    public func isNull(_ i: Int32) -> Bool { cells.isNull(i) }
    public func text(_ i: Int32) -> String { cells.optionalText(i) ?? "" }
    public func optionalText(_ i: Int32) -> String? { cells.optionalText(i) }
    public func optionalInt(_ i: Int32) -> Int64? { isNull(i) ? nil : int(i) }
    public func date(_ i: Int32) -> Date { Date(timeIntervalSince1970: double(i)) }
}

/// Why an SQL call failed, in terms every engine can answer: `isConstraint` tells a UNIQUE (or
/// other constraint) clash from a real failure, `storeError` is what the store reports.
public protocol SQLFailure: Error, CustomStringConvertible {
    var isConstraint: Bool { get }
    var storeError: StoreError { get }
}

/// Where a statement is run from: a file and line of the catalog's source. Each engine keeps
/// the sites it ran (``SQLSites``), so the conformance suite can check that every statement in
/// the source runs on every engine.
public struct SQLSite: Hashable, Sendable, CustomStringConvertible {
    public let file: String
    public let line: UInt

    public init(_ file: StaticString, _ line: UInt) {
        self.file = "\(file)"
        self.line = line
    }

    public init(file: String, line: UInt) {
        self.file = file
        self.line = line
    }

    public var description: String { "\(file):\(line)" }
}

/// The statement sites an engine ran: a set of at most one entry per statement in the source.
public final class SQLSites: Sendable {
    private let sites = Locked(Set<SQLSite>())

    public init() {}
    func insert(_ site: SQLSite) { _ = sites.withLock { $0.insert(site) } }
    public var reached: Set<SQLSite> { sites.withLock { $0 } }
}

/// One connection to a catalog database, used by one thread at a time. SQL is written once, in
/// the subset both engines speak (`?` and `?N` placeholders, `ON CONFLICT … DO UPDATE`,
/// `RETURNING`, `CASE` instead of engine-only functions); an engine translates what it must.
/// Callers use the extension's methods, which name their call site.
public protocol SQLConnection: AnyObject {
    /// Runs a statement that returns no rows; returns the number of rows changed.
    func execute(_ sql: String, _ args: [SQLValue], site: SQLSite) throws -> Int
    func query<T>(_ sql: String, _ args: [SQLValue], site: SQLSite, _ read: (Row) -> T) throws -> [T]
    /// Runs several statements without arguments (migrations).
    func executeScript(_ sql: String, site: SQLSite) throws
}

extension SQLConnection {
    @discardableResult
    public func execute(_ sql: String, _ args: [SQLValue] = [], file: StaticString = #fileID, line: UInt = #line) throws -> Int {
        try execute(sql, args, site: SQLSite(file, line))
    }
    public func query<T>(_ sql: String, _ args: [SQLValue] = [], file: StaticString = #fileID, line: UInt = #line,
                         _ read: (Row) -> T) throws -> [T] {
        try query(sql, args, site: SQLSite(file, line), read)
    }
    public func first<T>(_ sql: String, _ args: [SQLValue] = [], file: StaticString = #fileID, line: UInt = #line,
                         _ read: (Row) -> T) throws -> T? {
        try query(sql, args, site: SQLSite(file, line), read).first
    }
    public func executeScript(_ sql: String, file: StaticString = #fileID, line: UInt = #line) throws {
        try executeScript(sql, site: SQLSite(file, line))
    }
}

public typealias Connection = any SQLConnection

/// The SQL dialect a migration is written in for each engine.
public enum SQLDialect: Sendable { case sqlite, postgres }

/// A catalog database: where it is, how to run reads and write transactions on it, and what its
/// schema version is. SQLite (one node, a file in the data dir) and PostgreSQL (many nodes) are
/// the two; everything above speaks to this protocol only.
public protocol CatalogEngine: AnyObject, Sendable {
    /// Where the catalog is, for messages: a file path, or a URL without its password.
    var location: String { get }
    var dialect: SQLDialect { get }
    /// Whether mounts on other nodes may share this catalog (their changes arrive by ``changes``).
    var isShared: Bool { get }
    /// An SQL expression for the database's clock, in seconds since 1970: leases are judged by
    /// one clock, not by each node's.
    var clockSQL: String { get }
    /// The statement sites this engine ran (for the conformance suite's coverage check).
    var sites: SQLSites { get }
    /// Runs `body` with a connection, outside a transaction.
    @discardableResult
    func read<T>(_ body: (Connection) throws -> T) throws(StoreError) -> T
    /// Runs `body` in a write transaction that no other writer (thread, process or node) comes
    /// between: all of it lands, or none of it. A thrown ``StoreError`` refuses and rolls back.
    @discardableResult
    func write<T>(_ body: (Connection) throws -> T) throws(StoreError) -> T
    /// The schema version recorded in the database (read inside a write transaction).
    func schemaVersion(_ db: Connection) throws -> Int
    func setSchemaVersion(_ db: Connection, _ version: Int) throws
    /// "ok" when the database is sound.
    func integrityCheck() throws(StoreError) -> String
    /// Starts delivering change notices made by other connections (other nodes): each a
    /// table name and, for versions, the model id (`versions:12`), or `*` after a reconnect
    /// (anything may have changed). Engines that are not shared never call `handler`.
    func watchChanges(_ handler: @escaping @Sendable (String) -> Void)
    func close()
}

func storeError(_ error: any Error) -> StoreError {
    if let e = error as? StoreError { return e }
    if let e = error as? any SQLFailure { return e.storeError }
    return StoreError(.io, "catalog: \(error)")
}

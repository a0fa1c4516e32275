import CSQLite
import Glibc
import Foundation
import ModelStore

/// Why an SQLite call failed.
public struct SQLiteError: SQLFailure {
    public let code: Int32
    public let message: String
    public var isConstraint: Bool { code & 0xFF == SQLITE_CONSTRAINT }
    public var description: String { "SQLite: \(message)" }

    public var storeError: StoreError {
        switch code & 0xFF {
        case SQLITE_FULL: return StoreError(.noSpace, "catalog: disk full")
        case SQLITE_BUSY, SQLITE_LOCKED: return StoreError(.busy, "catalog is busy: \(message)")
        default: return StoreError(.io, "catalog: \(message)")
        }
    }
}

/// The current row of an SQLite statement.
private struct SQLiteCells: RowCells {
    let statement: OpaquePointer

    func int(_ i: Int32) -> Int64 { sqlite3_column_int64(statement, i) }
    func double(_ i: Int32) -> Double { sqlite3_column_double(statement, i) }
    func isNull(_ i: Int32) -> Bool { sqlite3_column_type(statement, i) == SQLITE_NULL }
    func optionalText(_ i: Int32) -> String? {
        guard let p = sqlite3_column_text(statement, i) else { return nil }
        return String(decoding: UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(statement, i))), as: UTF8.self)
    }
}

/// One SQLite connection, used by one thread at a time (``SQLiteEngine`` holds the lock).
final class SQLiteConnection: SQLConnection {
    private let handle: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]
    private let sites: SQLSites

    init(path: String, sites: SQLSites) throws {
        self.sites = sites
        var h: OpaquePointer?
        let rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let h else {
            let message = h.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(h)
            throw SQLiteError(code: rc, message: "\(path): \(message)")
        }
        handle = h
        sqlite3_extended_result_codes(h, 1)
    }

    deinit {
        for s in statements.values { sqlite3_finalize(s) }
        sqlite3_close(handle)
    }

    private func error(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)))
    }

    /// A cached prepared statement for `sql`, reset and bound to `args`.
    private func prepare(_ sql: String, _ args: [SQLValue]) throws -> OpaquePointer {
        let statement: OpaquePointer
        if let cached = statements[sql] {
            statement = cached
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        } else {
            var s: OpaquePointer?
            let rc = sqlite3_prepare_v2(handle, sql, -1, &s, nil)
            guard rc == SQLITE_OK, let s else { throw error(rc) }
            statements[sql] = s
            statement = s
        }
        for (index, value) in args.enumerated() {
            let i = Int32(index + 1)
            let rc: Int32
            switch value {
            case .int(let v): rc = sqlite3_bind_int64(statement, i, v)
            case .double(let v): rc = sqlite3_bind_double(statement, i, v)
            case .text(let v): rc = sqlite3_bind_text(statement, i, v, -1, sqlite_transient())
            case .null: rc = sqlite3_bind_null(statement, i)
            }
            guard rc == SQLITE_OK else { throw error(rc) }
        }
        return statement
    }

    func execute(_ sql: String, _ args: [SQLValue], site: SQLSite) throws -> Int {
        sites.insert(site)
        let statement = try prepare(sql, args)
        defer { sqlite3_reset(statement) }
        var rc = sqlite3_step(statement)
        while rc == SQLITE_ROW { rc = sqlite3_step(statement) }
        guard rc == SQLITE_DONE else { throw error(rc) }
        return Int(sqlite3_changes(handle))
    }

    func executeScript(_ sql: String, site: SQLSite) throws {
        sites.insert(site)
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? "error \(rc)"
            sqlite3_free(message)
            throw SQLiteError(code: rc, message: text)
        }
    }

    func query<T>(_ sql: String, _ args: [SQLValue], site: SQLSite, _ read: (Row) -> T) throws -> [T] {
        sites.insert(site)
        let statement = try prepare(sql, args)
        defer { sqlite3_reset(statement) }
        var out: [T] = []
        let row = Row(cells: SQLiteCells(statement: statement))
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return out }
            guard rc == SQLITE_ROW else { throw error(rc) }
            out.append(read(row))
        }
    }
}

/// A SQLite database in WAL mode behind a lock: one connection per process is plenty for a
/// catalog whose queries take microseconds, and the lock keeps the connection single-threaded.
/// Other processes (the CLI next to a mount) share the file through WAL and a busy timeout;
/// `BEGIN IMMEDIATE` lets one writer in at a time.
public final class SQLiteEngine: CatalogEngine, @unchecked Sendable {
    private let transactions = TransactionClock()
    private let lock = NSLock()
    private let connection: SQLiteConnection
    public let path: String
    public var location: String { path }
    public var dialect: SQLDialect { .sqlite }
    public var isShared: Bool { false }
    public var clockSQL: String { "((julianday('now') - 2440587.5) * 86400.0)" }
    public let sites: SQLSites

    public init(path: String) throws(StoreError) {
        self.path = path
        let sites = SQLSites()
        self.sites = sites
        // Private to the user who creates it: SQLite gives the -wal and -shm files the mode of
        // the database file, so creating that one 0600 makes all three so.
        if !path.isEmpty && path != ":memory:" && !path.hasPrefix("file:") {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            if fd >= 0 { Glibc.close(fd) }
        }
        do {
            connection = try SQLiteConnection(path: path, sites: sites)
            try connection.executeScript("PRAGMA busy_timeout = 10000;")
            // Two processes creating the catalog at once (racing first imports): switching a new
            // file to WAL needs it alone for a moment, and the loser is told "locked" at once
            // rather than waiting; it waits here instead.
            var attempt = 0
            while true {
                do {
                    try connection.executeScript("PRAGMA journal_mode = WAL;")
                    break
                } catch let e as SQLiteError where e.code & 0xFF == SQLITE_BUSY && attempt < 200 {
                    attempt += 1
                    usleep(50_000)
                }
            }
            try connection.executeScript("""
                PRAGMA synchronous = NORMAL;
                PRAGMA foreign_keys = ON;
                """)
        } catch {
            throw storeError(error)
        }
    }

    @discardableResult
    public func read<T>(_ body: (Connection) throws -> T) throws(StoreError) -> T {
        lock.lock()
        defer { lock.unlock() }
        do { return try body(connection) } catch { throw storeError(error) }
    }

    @discardableResult
    public func write<T>(_ body: (Connection) throws -> T) throws(StoreError) -> T {
        try transactions.timed { () throws(StoreError) -> T in try transaction(body) }
    }

    private func transaction<T>(_ body: (Connection) throws -> T) throws(StoreError) -> T {
        lock.lock()
        defer { lock.unlock() }
        do {
            try connection.execute("BEGIN IMMEDIATE")
        } catch {
            throw storeError(error)
        }
        do {
            let result = try body(connection)
            try connection.execute("COMMIT")
            return result
        } catch {
            _ = try? connection.execute("ROLLBACK")
            throw storeError(error)
        }
    }

    public func schemaVersion(_ db: Connection) throws -> Int {
        try db.first("PRAGMA user_version") { Int($0.int(0)) } ?? 0
    }

    public func setSchemaVersion(_ db: Connection, _ version: Int) throws {
        try db.execute("PRAGMA user_version = \(version)")
    }

    public func integrityCheck() throws(StoreError) -> String {
        try read { try $0.query("PRAGMA integrity_check") { $0.text(0) }.joined(separator: "\n") }
    }

    /// One file is one node's: the CLI beside a mount changes it, and the mount's short
    /// attribute times cover that.
    public func watchChanges(_ handler: @escaping @Sendable (String) -> Void) {}

    public func close() {}
}

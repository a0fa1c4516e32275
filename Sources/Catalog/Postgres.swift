import CPostgres
import Foundation
import Glibc
import ModelStore

/// Why a PostgreSQL call failed: its SQLSTATE, or a lost connection.
public struct PostgresError: SQLFailure {
    public let sqlState: String
    public let message: String
    /// The connection is gone (server down, restarted, unreachable, or a timeout cancelled it).
    public let connectionLost: Bool

    public var isConstraint: Bool { sqlState.hasPrefix("23") }
    public var description: String { "PostgreSQL: \(message)" }

    public var storeError: StoreError {
        if connectionLost || sqlState.hasPrefix("08") || sqlState.hasPrefix("57") {
            return StoreError(.io, "catalog unreachable: \(message)")
        }
        switch sqlState {
        case "40001", "40P01", "55P03": return StoreError(.busy, "catalog is busy: \(message)")
        case "53100": return StoreError(.noSpace, "catalog: database disk full")
        default: return StoreError(.io, "catalog: \(message)")
        }
    }
}

/// A `postgresql://` catalog URL, and the same without its password for messages.
public struct PostgresURL: Sendable, Equatable {
    public let url: String

    public init?(_ text: String) {
        guard text.hasPrefix("postgresql://") || text.hasPrefix("postgres://") else { return nil }
        url = text
    }

    /// The URL with any password replaced by `***`: safe for logs, errors and the bucket's owner record.
    public var redacted: String {
        guard let scheme = url.range(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@") else { return url }
        let userinfo = authority[..<at]
        guard let colon = userinfo.firstIndex(of: ":") else { return url }
        return String(url[..<scheme.upperBound]) + userinfo[..<colon] + ":***" + String(url[at...])
    }
}

/// Columns of one row of a text-format PostgreSQL result.
private struct PostgresCells: RowCells {
    let result: OpaquePointer
    var row: Int32 = 0

    func isNull(_ i: Int32) -> Bool { PQgetisnull(result, row, i) == 1 }
    func optionalText(_ i: Int32) -> String? {
        guard !isNull(i), let p = PQgetvalue(result, row, i) else { return nil }
        return String(cString: p)
    }
    func int(_ i: Int32) -> Int64 {
        guard let s = optionalText(i) else { return 0 }
        if let v = Int64(s) { return v }
        if s == "t" { return 1 }
        if s == "f" { return 0 }
        return Int64(Double(s) ?? 0)
    }
    func double(_ i: Int32) -> Double { optionalText(i).flatMap(Double.init) ?? 0 }
}

/// One libpq connection, used by one thread at a time. Every call waits at most `timeout` for
/// the server: past it the query is cancelled and the connection dropped, so a hung or
/// unreachable server fails an operation (`EIO`) instead of hanging it.
final class PostgresConnection: SQLConnection {
    private var handle: OpaquePointer?
    private let url: PostgresURL
    private let timeout: Double
    private var translated: [String: String] = [:]

    init(url: PostgresURL, timeout: Double) throws {
        self.url = url
        self.timeout = timeout
        try connect()
    }

    deinit { if let handle { PQfinish(handle) } }

    var isAlive: Bool { handle.map { PQstatus($0) == CONNECTION_OK } ?? false }
    var socket: Int32 { handle.map { PQsocket($0) } ?? -1 }
    var raw: OpaquePointer? { handle }

    /// Connects, bounded by `connect_timeout`; the URL's own settings win over these defaults.
    /// The password comes from the URL, `PGPASSWORD` or `~/.pgpass`, all read by libpq.
    private func connect() throws {
        let seconds = String(max(2, Int(timeout.rounded(.up))))
        let keys = ["application_name", "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                    "keepalives_count", "tcp_user_timeout", "dbname"]
        let values = ["modelfs", seconds, "1", "5", "2", "3", String(Int(timeout * 1000)), url.url]
        let conn = withCStrings(keys) { k in withCStrings(values) { v in PQconnectdbParams(k, v, 1) } }
        guard let conn, PQstatus(conn) == CONNECTION_OK else {
            let message = conn.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let conn { PQfinish(conn) }
            throw PostgresError(sqlState: "08001", message: "\(url.redacted): \(Self.oneLine(message))", connectionLost: true)
        }
        handle = conn
        // Nothing a notice says matters to the catalog; keep them out of stderr.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        _ = try run(nil, "SET client_min_messages = warning; SET TIME ZONE 'UTC'", [])
    }

    static func oneLine(_ s: String) -> String {
        s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "; ")
    }

    private func lost(_ message: String) -> PostgresError {
        if let handle { PQfinish(handle) }
        handle = nil
        return PostgresError(sqlState: "08006", message: "\(url.redacted): \(Self.oneLine(message))", connectionLost: true)
    }

    /// `?` and `?N` placeholders as PostgreSQL's `$N`, outside quoted strings.
    static func translate(_ sql: String) -> String {
        var out = ""
        var next = 1
        var quoted = false
        var chars = sql.makeIterator()
        var pending: Character? = nil
        while let c = pending ?? chars.next() {
            pending = nil
            if c == "'" { quoted.toggle(); out.append(c); continue }
            guard c == "?", !quoted else { out.append(c); continue }
            var digits = ""
            while let d = chars.next() {
                if d.isASCII && d.isNumber { digits.append(d) } else { pending = d; break }
            }
            if digits.isEmpty { out += "$\(next)"; next += 1 } else { out += "$" + digits }
        }
        return out
    }

    /// Sends one query (parameters in text form) and waits for all its results.
    private func run(_ sql: String?, _ script: String?, _ args: [SQLValue]) throws -> [OpaquePointer] {
        if handle == nil { try connect() }
        guard let conn = handle else { throw lost("not connected") }
        let sent: Int32
        if let sql {
            let text = translated[sql] ?? { let t = Self.translate(sql); translated[sql] = t; return t }()
            var types: [Oid] = []
            var values: [String?] = []
            for a in args {
                switch a {
                case .int(let v): types.append(20); values.append(String(v))
                case .double(let v): types.append(701); values.append("\(v)")
                case .text(let v): types.append(25); values.append(v)
                case .null: types.append(0); values.append(nil)
                }
            }
            sent = withOptionalCStrings(values) { pointers in
                PQsendQueryParams(conn, text, Int32(args.count), types, pointers, nil, nil, 0)
            }
        } else {
            sent = PQsendQuery(conn, script ?? "")
        }
        guard sent == 1 else { throw lost(String(cString: PQerrorMessage(conn))) }
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            guard PQconsumeInput(conn) == 1 else { throw lost(String(cString: PQerrorMessage(conn))) }
            if PQisBusy(conn) == 0 { break }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 {
                if let cancel = PQgetCancel(conn) {
                    var buffer = [CChar](repeating: 0, count: 256)
                    _ = PQcancel(cancel, &buffer, Int32(buffer.count))
                    PQfreeCancel(cancel)
                }
                throw lost("no answer within \(Int(timeout)) s")
            }
            var fd = pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0)
            _ = poll(&fd, 1, Int32(min(left, 1) * 1000) + 1)
        }
        var results: [OpaquePointer] = []
        var failure: PostgresError?
        while let r = PQgetResult(conn) {
            let status = PQresultStatus(r)
            if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK {
                results.append(r)
            } else {
                if failure == nil {
                    let state = PQresultErrorField(r, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? ""
                    let message = PQresultErrorMessage(r).map { String(cString: $0) } ?? "error"
                    failure = PostgresError(sqlState: state, message: Self.oneLine(message), connectionLost: PQstatus(conn) != CONNECTION_OK)
                }
                PQclear(r)
            }
        }
        if let failure {
            results.forEach { PQclear($0) }
            if failure.connectionLost { _ = lost(failure.message) }
            throw failure
        }
        if PQstatus(conn) != CONNECTION_OK { results.forEach { PQclear($0) }; throw lost(String(cString: PQerrorMessage(conn))) }
        return results
    }

    @discardableResult
    func execute(_ sql: String, _ args: [SQLValue]) throws -> Int {
        let results = try run(sql, nil, args)
        defer { results.forEach { PQclear($0) } }
        guard let last = results.last, let tuples = PQcmdTuples(last) else { return 0 }
        return Int(String(cString: tuples)) ?? 0
    }

    func query<T>(_ sql: String, _ args: [SQLValue], _ read: (Row) -> T) throws -> [T] {
        let results = try run(sql, nil, args)
        defer { results.forEach { PQclear($0) } }
        guard let result = results.last else { return [] }
        var out: [T] = []
        let count = PQntuples(result)
        out.reserveCapacity(Int(count))
        for i in 0..<count { out.append(read(Row(cells: PostgresCells(result: result, row: i)))) }
        return out
    }

    func executeScript(_ sql: String) throws {
        let results = try run(nil, sql, [])
        results.forEach { PQclear($0) }
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers = copies.map { UnsafePointer($0) } + [nil]
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

private func withOptionalCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let copies = strings.map { $0.map { strdup($0) } ?? nil }
    defer { copies.forEach { free($0) } }
    let pointers = copies.map { $0.map { UnsafePointer($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}

/// A catalog in PostgreSQL, shared by every node that mounts it. Write transactions take one
/// transaction-scoped advisory lock, so writers come in one at a time across all nodes, exactly
/// as SQLite's `BEGIN IMMEDIATE` lets them in on one: a rule that reads and then changes inside
/// a transaction holds across nodes as it holds across processes, and UNIQUE constraints back
/// it up. Reads need no lock. A few connections are pooled; a lost one is replaced at next use.
public final class PostgresEngine: CatalogEngine, @unchecked Sendable {
    public let url: PostgresURL
    public var location: String { url.redacted }
    public var dialect: SQLDialect { .postgres }
    public var isShared: Bool { true }
    public var clockSQL: String { "extract(epoch from clock_timestamp())::double precision" }
    public static let channel = "modelfs_changes"
    /// The advisory lock every write transaction takes ("modelfs" in ASCII).
    static let writeLock: Int64 = 0x6d6f_6465_6c66_73
    let timeout: Double
    private let poolSize: Int
    private let condition = NSCondition()
    private var idle: [PostgresConnection] = []
    private var open = 0
    private var closed = false
    private var watcher: Thread?

    /// Connects once (so a wrong URL or password fails here, not at first use).
    public init(url: PostgresURL, timeout: Double = 10, poolSize: Int = 4) throws(StoreError) {
        self.url = url
        self.timeout = timeout
        self.poolSize = poolSize
        do {
            idle.append(try PostgresConnection(url: url, timeout: timeout))
            open = 1
        } catch {
            throw storeError(error)
        }
    }

    private func checkout() throws -> PostgresConnection {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let c = idle.popLast() { return c }
            if open < poolSize {
                open += 1
                condition.unlock()
                do {
                    let c = try PostgresConnection(url: url, timeout: timeout)
                    condition.lock()
                    return c
                } catch {
                    condition.lock()
                    open -= 1
                    condition.signal()
                    throw error
                }
            }
            condition.wait()
        }
    }

    private func checkin(_ c: PostgresConnection) {
        condition.lock()
        if c.isAlive && !closed { idle.append(c) } else { open -= 1 }
        condition.signal()
        condition.unlock()
    }

    @discardableResult

    public func read<T>(_ body: (Connection) throws -> T) throws(StoreError) -> T {
        do {
            let c = try checkout()
            defer { checkin(c) }
            return try body(c)
        } catch {
            throw storeError(error)
        }
    }

    @discardableResult

    public func write<T>(_ body: (Connection) throws -> T) throws(StoreError) -> T {
        let c: PostgresConnection
        do { c = try checkout() } catch { throw storeError(error) }
        defer { checkin(c) }
        do {
            try c.executeScript("BEGIN; SELECT pg_advisory_xact_lock(\(Self.writeLock))")
        } catch {
            try? c.executeScript("ROLLBACK")
            throw storeError(error)
        }
        do {
            let result = try body(c)
            try c.executeScript("COMMIT")
            return result
        } catch {
            if c.isAlive { try? c.executeScript("ROLLBACK") }
            throw storeError(error)
        }
    }

    public func schemaVersion(_ db: Connection) throws -> Int {
        try db.executeScript("CREATE TABLE IF NOT EXISTS modelfs_schema (version BIGINT NOT NULL)")
        return try db.first("SELECT version FROM modelfs_schema") { Int($0.int(0)) } ?? 0
    }

    public func setSchemaVersion(_ db: Connection, _ version: Int) throws {
        if try db.execute("UPDATE modelfs_schema SET version = ?", [.int(Int64(version))]) == 0 {
            try db.execute("INSERT INTO modelfs_schema (version) VALUES (?)", [.int(Int64(version))])
        }
    }

    public func integrityCheck() throws(StoreError) -> String {
        try read { try $0.first("SELECT 'ok'") { $0.text(0) } ?? "no answer" }
    }

    /// A thread with a connection of its own LISTENs on ``channel``; after a lost connection it
    /// reconnects every second and reports `*`, since notices sent meanwhile are lost.
    public func watchChanges(_ handler: @escaping @Sendable (String) -> Void) {
        let thread = Thread { [weak self] in
            var listener: PostgresConnection?
            while let self, !self.isClosed {
                if listener?.isAlive != true {
                    listener = try? PostgresConnection(url: self.url, timeout: self.timeout)
                    if let l = listener, (try? l.executeScript("LISTEN \(Self.channel)")) != nil {
                        handler("*")
                    } else {
                        listener = nil
                        Thread.sleep(forTimeInterval: 1)
                        continue
                    }
                }
                guard let l = listener, let conn = l.raw else { continue }
                var fd = pollfd(fd: l.socket, events: Int16(POLLIN), revents: 0)
                _ = poll(&fd, 1, 500)
                if PQconsumeInput(conn) != 1 || PQstatus(conn) != CONNECTION_OK { listener = nil; continue }
                while let notice = PQnotifies(conn) {
                    let payload = notice.pointee.extra.map { String(cString: $0) } ?? ""
                    PQfreemem(notice)
                    handler(payload)
                }
            }
        }
        thread.name = "catalog-changes"
        condition.lock()
        watcher = thread
        condition.unlock()
        thread.start()
    }

    private var isClosed: Bool {
        condition.lock()
        defer { condition.unlock() }
        return closed
    }

    public func close() {
        condition.lock()
        closed = true
        idle.removeAll()
        condition.unlock()
    }
}

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

    /// The URL with any password replaced by `***`, in its user part (`user:pw@`) and in its
    /// parameters (`?password=pw`, as libpq also takes it): safe for logs, errors and the bucket's
    /// owner record.
    public var redacted: String {
        var out = url
        if let scheme = out.range(of: "://") {
            let rest = out[scheme.upperBound...]
            let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
            let authority = rest[..<authorityEnd]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                out = String(out[..<scheme.upperBound]) + authority[..<colon] + ":***" + String(out[at...])
            }
        }
        guard let question = out.firstIndex(of: "?") else { return out }
        let parameters = out[out.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false).map { p -> String in
            let key = p.prefix { $0 != "=" }
            return key.lowercased() == "password" && p.contains("=") ? key + "=***" : String(p)
        }
        return String(out[...question]) + parameters.joined(separator: "&")
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

/// One libpq connection, used by one thread at a time. Nothing here waits on the server without
/// a deadline: connecting is bounded by the deadline its caller gives, and every statement by
/// `timeout` (sent and awaited through libpq's asynchronous calls and `poll`), so a server that
/// refuses, stalls (SIGSTOP: the kernel still accepts and acknowledges) or is cut off fails an
/// operation (`EIO`) instead of hanging it. A statement past its deadline drops the connection;
/// its cancel request goes from another thread, since libpq's `PQcancel` waits without a limit.
final class PostgresConnection: SQLConnection {
    private var handle: OpaquePointer?
    private let url: PostgresURL
    private let timeout: Double
    private let sites: SQLSites
    private var translated: [String: String] = [:]

    init(url: PostgresURL, timeout: Double, sites: SQLSites, deadline: Date? = nil) throws {
        self.url = url
        self.timeout = timeout
        self.sites = sites
        try connect(until: deadline ?? Date().addingTimeInterval(timeout))
    }

    deinit { if let handle { PQfinish(handle) } }

    var isAlive: Bool { handle.map { PQstatus($0) == CONNECTION_OK } ?? false }
    var socket: Int32 { handle.map { PQsocket($0) } ?? -1 }
    var raw: OpaquePointer? { handle }

    /// Connects by `deadline`; the URL's own settings win over these defaults. Keepalives and
    /// `tcp_user_timeout` find a dead network under an idle connection; the deadline finds a
    /// server that accepts but never answers. The password comes from the URL, `PGPASSWORD` or
    /// `~/.pgpass`, all read by libpq.
    private func connect(until deadline: Date) throws {
        let keys = ["application_name", "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                    "keepalives_count", "tcp_user_timeout", "dbname"]
        let seconds = String(max(2, Int(timeout.rounded(.up))))
        let values = ["modelfs", seconds, "1", "5", "2", "3", String(Int(timeout * 1000)), url.url]
        let conn = withCStrings(keys) { k in withCStrings(values) { v in PQconnectStartParams(k, v, 1) } }
        func failed(_ message: String) -> PostgresError {
            if let conn { PQfinish(conn) }
            return PostgresError(sqlState: "08001", message: "\(url.redacted): \(Self.oneLine(message))", connectionLost: true)
        }
        guard let conn, PQstatus(conn) != CONNECTION_BAD else {
            throw failed(conn.map { String(cString: PQerrorMessage($0)) } ?? "out of memory")
        }
        var state = PGRES_POLLING_WRITING
        while state != PGRES_POLLING_OK {
            guard state != PGRES_POLLING_FAILED else { throw failed(String(cString: PQerrorMessage(conn))) }
            let events = state == PGRES_POLLING_READING ? POLLIN : POLLOUT
            guard Self.wait(PQsocket(conn), for: events, until: deadline) else {
                throw failed("no answer within \(Int(timeout)) s while connecting")
            }
            state = PQconnectPoll(conn)
        }
        handle = conn
        // Nothing a notice says matters to the catalog; keep them out of stderr.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        // Sends never block: a full socket buffer (a stalled server) is waited on with the deadline.
        PQsetnonblocking(conn, 1)
        // A node cut off inside a transaction must not keep the write lock from every other node
        // until TCP gives up (hours): the server ends a transaction left idle this long.
        let idle = Int(timeout * 3000)
        let settings = "SET client_min_messages = warning; SET TIME ZONE 'UTC'; SET idle_in_transaction_session_timeout = \(idle)"
        _ = try run(nil, settings, [], until: deadline)
    }

    /// Waits until `fd` is ready for `events`; false once `deadline` has passed.
    private static func wait(_ fd: Int32, for events: Int32, until deadline: Date) -> Bool {
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return false }
            var p = pollfd(fd: fd, events: Int16(events), revents: 0)
            let n = poll(&p, 1, Int32(min(left, 1) * 1000) + 1)
            if n > 0 { return true }
            if n < 0 && errno != EINTR { return true }  // let libpq report what is wrong with the socket
        }
    }

    static func oneLine(_ s: String) -> String {
        s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "; ")
    }

    private func lost(_ message: String) -> PostgresError {
        if let handle { PQfinish(handle) }
        handle = nil
        return PostgresError(sqlState: "08006", message: "\(url.redacted): \(Self.oneLine(message))", connectionLost: true)
    }

    /// Past a statement's deadline: asks the server to cancel it (from a thread of its own, at
    /// most one at a time: `PQcancel` has no timeout) and drops the connection now.
    private func abandon(_ conn: OpaquePointer) -> PostgresError {
        if let cancel = PQgetCancel(conn) { CancelRequests.send(cancel) }
        return lost("no answer within \(Int(timeout)) s")
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

    /// Sends one query (parameters in text form) and waits for all its results, at most until
    /// `until` (default: `timeout` from now).
    private func run(_ sql: String?, _ script: String?, _ args: [SQLValue], until: Date? = nil) throws -> [OpaquePointer] {
        let deadline = until ?? Date().addingTimeInterval(timeout)
        if handle == nil { try connect(until: deadline) }
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
        while true {
            let flushed = PQflush(conn)
            if flushed == 0 { break }
            guard flushed == 1 else { throw lost(String(cString: PQerrorMessage(conn))) }
            guard Self.wait(PQsocket(conn), for: POLLOUT | POLLIN, until: deadline) else { throw abandon(conn) }
            guard PQconsumeInput(conn) == 1 else { throw lost(String(cString: PQerrorMessage(conn))) }
        }
        while true {
            guard PQconsumeInput(conn) == 1 else { throw lost(String(cString: PQerrorMessage(conn))) }
            if PQisBusy(conn) == 0 { break }
            guard Self.wait(PQsocket(conn), for: POLLIN, until: deadline) else { throw abandon(conn) }
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
            // The next result of a script may not have arrived yet.
            while PQisBusy(conn) == 1 {
                guard Self.wait(PQsocket(conn), for: POLLIN, until: deadline) else {
                    results.forEach { PQclear($0) }
                    throw abandon(conn)
                }
                guard PQconsumeInput(conn) == 1 else {
                    results.forEach { PQclear($0) }
                    throw lost(String(cString: PQerrorMessage(conn)))
                }
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

    func execute(_ sql: String, _ args: [SQLValue], site: SQLSite) throws -> Int {
        sites.insert(site)
        let results = try run(sql, nil, args)
        defer { results.forEach { PQclear($0) } }
        guard let last = results.last, let tuples = PQcmdTuples(last) else { return 0 }
        return Int(String(cString: tuples)) ?? 0
    }

    func query<T>(_ sql: String, _ args: [SQLValue], site: SQLSite, _ read: (Row) -> T) throws -> [T] {
        sites.insert(site)
        let results = try run(sql, nil, args)
        defer { results.forEach { PQclear($0) } }
        guard let result = results.last else { return [] }
        var out: [T] = []
        let count = PQntuples(result)
        out.reserveCapacity(Int(count))
        for i in 0..<count { out.append(read(Row(cells: PostgresCells(result: result, row: i)))) }
        return out
    }

    func executeScript(_ sql: String, site: SQLSite) throws {
        sites.insert(site)
        let results = try run(nil, sql, [])
        results.forEach { PQclear($0) }
    }
}

/// Cancel requests of statements that ran past their deadline, each sent from a thread of its
/// own: `PQcancel` connects and waits for the server without a limit (libpq 15), so one stalled
/// server may hold one such thread, never a caller. One at a time; others are dropped (the
/// server ends a dropped connection's statement when it next writes to it).
private enum CancelRequests {
    private struct Request: @unchecked Sendable { let cancel: OpaquePointer }
    private static let busy = Locked(false)

    static func send(_ cancel: OpaquePointer) {
        let request = Request(cancel: cancel)
        guard busy.withLock({ (b: inout Bool) -> Bool in defer { b = true }; return !b }) else {
            PQfreeCancel(cancel)
            return
        }
        Thread.detachNewThread {
            var buffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(request.cancel, &buffer, Int32(buffer.count))
            PQfreeCancel(request.cancel)
            busy.withLock { $0 = false }
        }
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
    private let transactions = TransactionClock()
    public let url: PostgresURL
    public var location: String { url.redacted }
    public var dialect: SQLDialect { .postgres }
    public var isShared: Bool { true }
    public var clockSQL: String { "extract(epoch from clock_timestamp())::double precision" }
    public static let channel = "modelfs_changes"
    /// The advisory lock every write transaction takes ("modelfs" in ASCII).
    static let writeLock: Int64 = 0x6d6f_6465_6c66_73
    /// Seconds any one statement, and any wait for a connection, may take.
    let timeout: Double
    public let sites = SQLSites()
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
            idle.append(try PostgresConnection(url: url, timeout: timeout, sites: sites))
            open = 1
        } catch {
            throw storeError(error)
        }
    }

    /// An idle connection, or a new one while fewer than `poolSize` are open. Waiting for one and
    /// connecting share one deadline: with every connection stuck on a stalled server, the
    /// other callers fail in bounded time too, not one after another.
    private func checkout() throws -> PostgresConnection {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let c = idle.popLast() { return c }
            if open < poolSize {
                open += 1
                condition.unlock()
                do {
                    let c = try PostgresConnection(url: url, timeout: timeout, sites: sites, deadline: deadline)
                    condition.lock()
                    return c
                } catch {
                    condition.lock()
                    open -= 1
                    condition.signal()
                    throw error
                }
            }
            guard condition.wait(until: deadline) || !idle.isEmpty || open < poolSize else {
                let message = "\(url.redacted): all \(poolSize) connections busy for \(Int(timeout)) s"
                throw PostgresError(sqlState: "08006", message: message, connectionLost: true)
            }
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
        try transactions.timed { () throws(StoreError) -> T in try transaction(body) }
    }

    private func transaction<T>(_ body: (Connection) throws -> T) throws(StoreError) -> T {
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
                    listener = try? PostgresConnection(url: self.url, timeout: self.timeout, sites: SQLSites())
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

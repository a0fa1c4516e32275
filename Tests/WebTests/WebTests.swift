import Foundation
import Glibc
import HTTPTypes
import Hummingbird
import NIOCore
import Testing
import Catalog
@testable import Web
import ModelStore
import Spawn

/// Each store error's HTTP status follows the errno the mount gives for it.
@Test(arguments: [
    (StoreError.Code.notFound, HTTPResponse.Status.notFound, "ENOENT"),
    (.alreadyExists, .conflict, "EEXIST"),
    (.busy, .conflict, "EBUSY"),
    (.notReady, .conflict, "EAGAIN"),
    (.accessDenied, .forbidden, "EACCES"),
    (.notPermitted, .forbidden, "EPERM"),
    (.invalidArgument, .badRequest, "EINVAL"),
    (.notSupported, .notImplemented, "ENOTSUP"),
    (.io, .internalServerError, "EIO"),
    (.stale, .internalServerError, "ESTALE"),
    (.noSpace, .internalServerError, "ENOSPC"),
])
func statusOf(_ code: StoreError.Code, _ status: HTTPResponse.Status, _ errno: String) {
    let e = WebError(StoreError(code, "the message"))
    #expect(e.status == status)
    #expect(e.errno == errno)
    #expect(e.message == "the message")
}

@Test(arguments: [
    (ENOENT, HTTPResponse.Status.notFound), (EEXIST, .conflict), (EBUSY, .conflict), (ENOTEMPTY, .conflict), (EAGAIN, .conflict),
    (EACCES, .forbidden), (EPERM, .forbidden), (EINVAL, .badRequest), (ENOTSUP, .notImplemented),
    (EIO, .internalServerError), (ESTALE, .internalServerError), (EXDEV, .internalServerError),
])
func statusOfErrno(_ errno: Int32, _ status: HTTPResponse.Status) {
    #expect(httpStatus(forErrno: errno) == status)
}

@Test func everyCodeHasAStatusAndItsErrnosName() {
    for code in StoreError.Code.allCases {
        #expect(errnoName(for: code).hasPrefix("E"))
        #expect(httpStatus(for: code).code >= 400)
    }
}

// MARK: The tokens file

let me = String(cString: getpwuid(getuid())!.pointee.pw_name)

@Test func tokensNameUsersByNameOrNumber() throws {
    let tokens = try Tokens.parse("""
        # the admin's tokens
        aaaaaaaaaaaaaaaaaaaa \(me)

        bbbbbbbbbbbbbbbbbbbb\t4242
        """)
    #expect(tokens.count == 2)
    #expect(tokens.user(for: "aaaaaaaaaaaaaaaaaaaa") == WebUser(name: me, uid: getuid(), gid: getpwuid(getuid())!.pointee.pw_gid))
    #expect(tokens.user(for: "bbbbbbbbbbbbbbbbbbbb")?.uid == 4242)
    #expect(tokens.user(for: "bbbbbbbbbbbbbbbbbbb") == nil)
    #expect(tokens.user(for: "") == nil)
}

@Test(arguments: [
    ("tooshort \(me)", "line 1: the token is shorter than 16 characters"),
    ("aaaaaaaaaaaaaaaaaaaa", "line 1: expected 'TOKEN USER'"),
    ("aaaaaaaaaaaaaaaaaaaa \(me) extra", "line 1: expected 'TOKEN USER'"),
    ("aaaaaaaaaaaaaaaaaaaa \(me)\naaaaaaaaaaaaaaaaaaaa root", "line 2: the same token as an earlier line"),
    ("aaaaaaaaaaaaaaaaaaaa no-such-user-here", "line 1: no user no-such-user-here"),
])
func badTokenLinesAreRefusedWithoutTheToken(_ text: String, _ message: String) {
    #expect(throws: TokensError.self) { try Tokens.parse(text) }
    do { _ = try Tokens.parse(text) } catch {
        #expect(error.description.hasSuffix(message))
        #expect(!error.description.contains("aaaaaaaaaaaaaaaaaaaa"))
    }
}

@Test func aTokensFileOthersCanReadIsRefused() throws {
    let path = NSTemporaryDirectory() + "modelfs-tokens-\(getpid())"
    defer { unlink(path) }
    try "aaaaaaaaaaaaaaaaaaaa \(me)\n".write(toFile: path, atomically: false, encoding: .utf8)
    chmod(path, 0o644)
    #expect(throws: TokensError.self) { try Tokens.load(path: path) }
    chmod(path, 0o600)
    #expect(try Tokens.load(path: path).user(for: "aaaaaaaaaaaaaaaaaaaa")?.uid == getuid())
    #expect(throws: TokensError.self) { try Tokens.load(path: path + ".missing") }
}

// MARK: The OpenAPI document

@Test func theDocumentIsJSONAndDescribesEveryRoute() throws {
    let doc = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPI.document.utf8)) as? [String: Any])
    #expect(doc["openapi"] as? String == "3.1.0")
    let paths = try #require(doc["paths"] as? [String: [String: Any]])
    let routes = WebServer.routes
    #expect(routes.count > 20)
    for (method, path) in routes {
        #expect(paths[path]?[method.lowercased()] != nil, "\(method) \(path) is not in the OpenAPI document")
    }
    let described = paths.flatMap { path, ops in ops.keys.filter { $0 != "parameters" }.map { "\($0.uppercased()) \(path)" } }
    #expect(Set(described) == Set(routes.map { "\($0.0) \($0.1)" }), "the document describes routes the server does not have")
}

// MARK: Ranges of a download

@Test(arguments: [
    ("bytes=0-99", Optional(0..<100)), ("bytes=100-", Optional(100..<1000)), ("bytes=-10", Optional(990..<1000)),
    ("bytes=990-5000", Optional(990..<1000)), ("bytes=-5000", Optional(0..<1000)),
    // Not taken (the whole file then): several ranges, other units, nonsense.
    ("bytes=0-1,5-6", nil), ("items=0-1", nil), ("bytes=5-2", nil), ("bytes=x-", nil), ("bytes=", nil),
] as [(String, Range<Int64>?)])
func rangeOf(_ header: String, _ expected: Range<Int64>?) throws {
    #expect(try Download.range(header, size: 1000) == expected)
}

@Test func aRangePastTheEndIsUnsatisfiable() {
    #expect(throws: WebError.self) { try Download.range("bytes=1000-", size: 1000) }
    #expect(throws: WebError.self) { try Download.range("bytes=-1", size: 0) }
    #expect((try? Download.range(nil, size: 1000)) == .some(nil))
}

// MARK: Who asks

func request(_ method: HTTPRequest.Method, _ headers: HTTPFields = [:]) -> Request {
    Request(head: HTTPRequest(method: method, scheme: "http", authority: "localhost", path: "/api/v1/models", headerFields: headers),
            body: RequestBody(buffer: ByteBuffer()))
}

@Test func readsFromLoopbackNeedNoUserWritesAndOtherHostsDo() throws {
    let tokens = try Tokens.parse("aaaaaaaaaaaaaaaaaaaa 4242\n")
    let auth = Authentication(tokens: tokens, trustedHeader: nil)
    #expect(try auth.user(of: request(.get), peerIsLoopback: true, writing: false) == nil)
    #expect(throws: WebError.self) { try auth.user(of: request(.get), peerIsLoopback: false, writing: false) }
    #expect(throws: WebError.self) { try auth.user(of: request(.post), peerIsLoopback: true, writing: true) }
    let bearer = request(.post, [.authorization: "Bearer aaaaaaaaaaaaaaaaaaaa"])
    #expect(try auth.user(of: bearer, peerIsLoopback: false, writing: true)?.uid == 4242)
    // A wrong token is refused even for a read that needs none, and not echoed.
    do {
        _ = try auth.user(of: request(.get, [.authorization: "Bearer bbbbbbbbbbbbbbbbbbbb"]), peerIsLoopback: true, writing: false)
        Issue.record("a wrong token was taken")
    } catch {
        #expect(error.status == .unauthorized)
        #expect(!error.message.contains("bbbbbbbbbbbbbbbbbbbb"))
    }
    // Without --trust-proxy-header the header names nobody.
    #expect(throws: WebError.self) {
        try auth.user(of: request(.post, [HTTPField.Name("X-Remote-User")!: "4242"]), peerIsLoopback: true, writing: true)
    }
    let trusting = Authentication(tokens: nil, trustedHeader: HTTPField.Name("X-Remote-User"))
    #expect(try trusting.user(of: request(.get, [HTTPField.Name("X-Remote-User")!: "4242"]), peerIsLoopback: false, writing: false)?.uid == 4242)
}

@Test(arguments: [("127.0.0.1", true), ("127.1.2.3", true), ("::1", true), ("::ffff:127.0.0.1", true),
                  ("10.0.0.1", false), ("192.168.1.1", false), ("::ffff:10.0.0.1", false), ("2001:db8::1", false)])
func loopback(_ ip: String, _ expected: Bool) throws {
    #expect(WebContext.isLoopback(try SocketAddress(ipAddress: ip, port: 80)) == expected)
}

// MARK: Pages of a list, logs from an offset

@Test func pagingTakesALimitFromOneToAThousandAndAnyAfter() throws {
    #expect(try API.Paging([:]).limit == 100)
    #expect(try API.Paging(["limit": "1000", "after": "bert"]).limit == 1000)
    #expect(try API.Paging(["after": "bert"]).after == "bert")
    #expect(try API.Paging(["after": ""]).after == nil)
    for bad in ["0", "1001", "-1", "ten", "1e3"] {
        #expect(throws: StoreError.self) { try API.Paging(["limit": bad]) }
    }
}

@Test func aPagesLinkIsTheSameQueryAfterItsLastRow() {
    let page = API.Page([1, 2], next: "b é&c", path: "/api/v1/models", query: ["search": "a b", "limit": "2", "after": "a"])
    #expect(page.next == "/api/v1/models?limit=2&search=a%20b&after=b%20%C3%A9%26c")
    #expect(page.response().headers[HTTPField.Name("Link")!] == "</api/v1/models?limit=2&search=a%20b&after=b%20%C3%A9%26c>; rel=\"next\"")
    #expect(API.Page([1], next: nil, path: "/x", query: [:]).response().headers[HTTPField.Name("Link")!] == nil)
}

@Test func aLogIsReadFromAnOffsetWithItsSize() throws {
    let dir = NSTemporaryDirectory() + "modelfs-log-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try "0123456789".write(toFile: dir + "/log", atomically: false, encoding: .utf8)
    let whole = try #require(LogTail.read(directory: dir, from: 0))
    #expect(whole.bytes == Array("0123456789".utf8) && whole.size == 10)
    #expect(LogTail.read(directory: dir, from: 7)?.bytes == Array("789".utf8))
    #expect(LogTail.read(directory: dir, from: 50).map { ($0.bytes, $0.size) } ?? ([1], 0) == ([], 10))
    #expect(LogTail.read(directory: dir + "/none", from: 0) == nil)
    // Never through a link.
    let linked = dir + "/linked"
    try FileManager.default.createDirectory(atPath: linked, withIntermediateDirectories: true)
    symlink(dir + "/log", linked + "/log")
    #expect(LogTail.read(directory: linked, from: 0) == nil)
    #expect(try LogTail.offset(["offset": "12"]) == 12 && LogTail.offset([:]) == 0)
    #expect(throws: StoreError.self) { try LogTail.offset(["offset": "-1"]) }
    let response = whole.response()
    #expect(response.headers[HTTPField.Name("X-Log-Size")!] == "10" && response.headers[.contentType]?.hasPrefix("text/plain") == true)
}

/// A web user acts with their primary group alone, never with the server's own supplementary
/// groups (a server started from a shell of root's has group 0, say): a process's actor has its
/// process's groups, a web user's does not.
@Test func aWebUserActsWithTheirGroupNotTheServersGroups() throws {
    let path = NSTemporaryDirectory() + "modelfs-groups-\(UUID().uuidString).log"
    defer { unlink(path) }
    // A process with a supplementary group, as a server started with one would be.
    let pid = try #require(try? Spawn.detached("/usr/bin/setpriv", ["/usr/bin/setpriv", "--groups=4343", "/bin/sleep", "30"],
                                               environment: [:], log: path).get())
    defer { kill(pid, SIGKILL); var s: Int32 = 0; waitpid(pid, &s, 0) }
    var probed = false
    for _ in 0..<100 where !probed {
        probed = ModelStore.Actor(uid: 4242, gid: 4242, pid: pid).groups.contains(4343)
        if !probed { usleep(20_000) }
    }
    #expect(probed, "the probe has the group")
    var web = API.actor(for: WebUser(name: "eve", uid: 4242, gid: 4242))
    #expect(web.groups == [4242] && web.requester == .user(uid: 4242, gid: 4242))
    web.pid = pid  // even with the server's process named
    #expect(web.groups == [4242])
}

// MARK: Browser sessions and CSRF

@Test func aSessionCookieNamesItsUserAndAWriteNeedsThePagesCSRFToken() throws {
    let tokens = try Tokens.parse("aaaaaaaaaaaaaaaaaaaa 4242\n")
    let auth = Authentication(tokens: tokens, trustedHeader: nil)
    let id = try auth.signIn(token: "aaaaaaaaaaaaaaaaaaaa")
    #expect(!id.contains("aaaaaaaaaaaaaaaaaaaa") && id.count == 64)
    let cookie: HTTPFields = [.cookie: "theme=dark; \(Sessions.cookieName)=\(id)"]
    // A read: the session's user, no token needed.
    #expect(try auth.user(of: request(.get, cookie), peerIsLoopback: false, writing: false)?.uid == 4242)
    // A write without the token, or with another's, is refused (403) saying what is missing.
    do {
        _ = try auth.user(of: request(.delete, cookie), peerIsLoopback: true, writing: true)
        Issue.record("a write from a session without its CSRF token was taken")
    } catch {
        #expect(error.status == .forbidden)
        #expect(error.message.contains("X-CSRF-Token"))
    }
    var forged = cookie
    forged[Authentication.csrfHeader] = String(repeating: "0", count: 64)
    #expect(throws: WebError.self) { try auth.user(of: request(.delete, forged), peerIsLoopback: true, writing: true) }
    // With the token the page embeds, the write is the session's user's.
    let asker = try #require(try auth.asker(of: request(.get, cookie)))
    #expect(asker.means == .session(id))
    var signed = cookie
    signed[Authentication.csrfHeader] = auth.csrfToken(of: asker)
    #expect(try auth.user(of: request(.delete, signed), peerIsLoopback: true, writing: true)?.uid == 4242)
    // Logged out, the cookie names no one: a write needs a user again (401).
    try auth.sessions.close(id)
    do {
        _ = try auth.user(of: request(.delete, signed), peerIsLoopback: true, writing: true)
        Issue.record("a closed session was taken")
    } catch {
        #expect(error.status == .unauthorized)
    }
}

@Test func csrfTokensDifferBySessionAndProcessAndBearerTokensNeedNone() throws {
    let tokens = try Tokens.parse("aaaaaaaaaaaaaaaaaaaa 4242\n")
    let auth = Authentication(tokens: tokens, trustedHeader: HTTPField.Name("X-Remote-User"))
    let user = try auth.user(ofToken: "aaaaaaaaaaaaaaaaaaaa")
    let one = Authentication.Asker(user: user, means: .session(try auth.signIn(token: "aaaaaaaaaaaaaaaaaaaa")))
    let two = Authentication.Asker(user: user, means: .session(try auth.signIn(token: "aaaaaaaaaaaaaaaaaaaa")))
    #expect(auth.csrfToken(of: one) != auth.csrfToken(of: two))
    let restarted = Authentication(tokens: tokens, trustedHeader: nil)
    #expect(restarted.csrfToken(of: one) != auth.csrfToken(of: one), "another store's secret")
    // A bearer token is sent by a client that holds it, never by a browser on its own: no CSRF token.
    #expect(try auth.user(of: request(.post, [.authorization: "Bearer aaaaaaaaaaaaaaaaaaaa"]), peerIsLoopback: false, writing: true)?.uid == 4242)
    // The proxy's header is added to whatever the browser sends: a write needs the token too.
    let proxied: HTTPFields = [HTTPField.Name("X-Remote-User")!: "4242"]
    #expect(throws: WebError.self) { try auth.user(of: request(.post, proxied), peerIsLoopback: true, writing: true) }
    let asker = try #require(try auth.asker(of: request(.get, proxied)))
    var signed = proxied
    signed[Authentication.csrfHeader] = auth.csrfToken(of: asker)
    #expect(try auth.user(of: request(.post, signed), peerIsLoopback: true, writing: true)?.uid == 4242)
}

@Test func sessionsExpireAndUnknownCookiesNameNoOne() throws {
    let sessions = Sessions(secret: Array("a fixed secret for the test".utf8))
    let user = WebUser(name: "eve", uid: 4242, gid: 4242)
    let now = Date()
    let id = try sessions.open(for: user, tokenMark: sessions.mark(ofToken: "aaaaaaaaaaaaaaaaaaaa"), now: now)
    #expect(try sessions.session(of: id, now: now + 60) == Session(user: user, tokenMark: sessions.mark(ofToken: "aaaaaaaaaaaaaaaaaaaa")))
    #expect(try sessions.session(of: id, now: now + Sessions.lifetime + 1) == nil)
    #expect(try sessions.session(of: "not-a-session") == nil)
    #expect(Sessions.id(inCookies: ["a=b", "\(Sessions.cookieName)=xyz; c=d"]) == "xyz")
    #expect(Sessions.id(inCookies: ["\(Sessions.cookieName)="]) == nil)
    let cookie = Sessions.cookie(id)
    #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"))
    #expect(Sessions.cookie("").contains("Max-Age=0"))
    #expect(!cookie.contains("Secure") && Sessions.cookie(id, secure: true).contains("Secure"))
}

/// The tokens file is read again when it changes: a removed token stops working as a bearer, the
/// sessions signed in with it end (those of another token go on), and a file changed into one
/// that is refused refuses every token and session (503) until it is fixed, naming no token.
@Test func removingATokenFromTheFileEndsItAndItsSessions() throws {
    let path = NSTemporaryDirectory() + "modelfs-tokens-\(getpid())-\(UUID().uuidString)"
    defer { unlink(path) }
    func write(_ text: String, mode: mode_t = 0o600) throws {
        // A new file renamed over the old, as editors and config management do.
        try text.write(toFile: path + ".new", atomically: false, encoding: .utf8)
        chmod(path + ".new", mode)
        #expect(rename(path + ".new", path) == 0)
    }
    let kept = "bbbbbbbbbbbbbbbbbbbb", removed = "aaaaaaaaaaaaaaaaaaaa"
    try write("\(removed) 4242\n\(kept) 4243\n")
    let auth = Authentication(tokens: try TokensFile(path: path), trustedHeader: nil)
    let gone = try auth.signIn(token: removed), stays = try auth.signIn(token: kept)
    func asker(_ id: String) throws(WebError) -> WebUser? { try auth.asker(of: request(.get, [.cookie: "\(Sessions.cookieName)=\(id)"]))?.user }
    #expect(try asker(gone)?.uid == 4242 && asker(stays)?.uid == 4243)
    #expect(try auth.user(ofToken: removed).uid == 4242)

    try write("\(kept) 4243\n")
    #expect(try asker(gone) == nil, "its token left the file")
    #expect(try asker(stays)?.uid == 4243)
    #expect(throws: WebError.self) { try auth.user(ofToken: removed) }
    // The same token given to another user is not the same sign-in.
    try write("\(kept) 4243\n\(removed) 4244\n")
    #expect(try asker(gone) == nil)
    #expect(try auth.user(ofToken: removed).uid == 4244)

    // Edited in place into a file others can read: every token is refused until it is fixed.
    try write("\(kept) 4243\n")
    chmod(path, 0o644)
    func expectRefused(_ what: String, _ outcome: Result<WebUser?, WebError>) {
        switch outcome {
        case .success: Issue.record("\(what) was taken from a refused tokens file")
        case .failure(let error):
            #expect(error.status == .serviceUnavailable && error.message.contains("mode 644") && !error.message.contains(kept), "\(error)")
        }
    }
    expectRefused("a session", Result { () throws(WebError) in try asker(stays) })
    expectRefused("a bearer token", Result { () throws(WebError) in try auth.user(ofToken: kept) })
    chmod(path, 0o600)
    #expect(try asker(stays)?.uid == 4243, "fixed, the session goes on")
    unlink(path)
    #expect(throws: WebError.self) { try auth.user(ofToken: kept) }
}

/// Two web servers on one catalog (two processes on one SQLite file; two nodes on PostgreSQL run
/// the same statements in CatalogTests): a session opened by one is known to the other and to a
/// server started later, a logout on one ends it everywhere, both sign CSRF tokens alike, and the
/// catalog holds no id a browser could send.
@Test func serversOnOneCatalogShareSessionsAndTheirSecret() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("web-sessions-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let tokens = try Tokens.parse("aaaaaaaaaaaaaaaaaaaa 4242\n")
    func server() throws -> Authentication {
        Authentication(tokens: tokens, trustedHeader: nil, sessions: try Sessions(catalog: try Catalog(path: dir + "/catalog.db")))
    }
    let one = try server(), two = try server()
    let id = try one.signIn(token: "aaaaaaaaaaaaaaaaaaaa")
    let cookie: HTTPFields = [.cookie: "\(Sessions.cookieName)=\(id)"]
    let asker = try #require(try two.asker(of: request(.get, cookie)), "the other server knows the session")
    #expect(asker.user.uid == 4242 && asker.means == .session(id))
    #expect(one.csrfToken(of: asker) == two.csrfToken(of: asker), "one secret for the catalog")
    var signed = cookie
    signed[Authentication.csrfHeader] = one.csrfToken(of: asker)
    #expect(try two.user(of: request(.delete, signed), peerIsLoopback: true, writing: true)?.uid == 4242)
    let later = try server()
    #expect(try later.asker(of: request(.get, cookie))?.user.uid == 4242, "a restart keeps the session")
    // The database and its write-ahead log, as bytes.
    let db = ["", "-wal"].compactMap { try? String(contentsOfFile: dir + "/catalog.db" + $0, encoding: .isoLatin1) }.joined()
    #expect(!db.contains(id) && db.contains(Sessions.key(id)), "kept by its hash, never by the id")
    try two.sessions.close(id)
    #expect(try one.asker(of: request(.get, cookie)) == nil, "logged out on one, gone on all")
}

// MARK: Pages

@Test func markupEscapesEveryValue() {
    #expect(HTML.escape(#"<script>alert("x")</script> & 'y'"#) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;")
    #expect(HTML.segment("a b/c?d") == "a%20b%2Fc%3Fd")
    #expect(Pages.localPath("https://evil.example/") == "/" && Pages.localPath("//evil.example") == "/" && Pages.localPath("/models/x") == "/models/x")
}

@Test func aPageOfRowsStartsAfterTheOneNamed() {
    let names = (1...250).map { "m\($0)" }
    let first = Pages.page(names, after: nil) { $0 }
    #expect(first.rows.count == Pages.pageSize && first.rows.first == "m1" && first.next == "m100")
    let second = Pages.page(names, after: first.next) { $0 }
    #expect(second.rows.first == "m101" && second.next == "m200")
    let last = Pages.page(names, after: second.next) { $0 }
    #expect(last.rows.count == 50 && last.next == nil)
    #expect(Array(Pages.page(["a", "c", "e"], after: "b") { $0 }.rows) == ["c", "e"], "b was deleted meanwhile")
}

@Test func lineageDrawsEachTrainingAsAnArrowFromItsParent() {
    let now = Date()
    func version(_ id: Int64, _ name: String, parent: String? = nil) -> Version {
        Version(id: VersionID(id), modelID: ModelID(1), name: name, format: "pt", objectKey: "k\(id)", size: 1, sha256: nil, status: .ready,
                error: nil, note: "", lineage: Lineage(parentVersion: parent, dataset: parent.map { _ in "qa<1>" }, job: parent.map { "job-\($0)" }),
                created: now + Double(id), modified: now)
    }
    let svg = Lineages.svg(model: "m", [version(1, "v1"), version(2, "v2", parent: "v1"), version(3, "v3", parent: "v2.pt"),
                                        version(4, "v4", parent: "v1"), version(5, "v5")])
    #expect(svg.components(separatedBy: "<g class=\"node").count - 1 == 4, "v5 has no parent nor child: not drawn")
    #expect(svg.components(separatedBy: "<path class=\"edge\"").count - 1 == 3)
    #expect(svg.contains("qa&lt;1&gt; · job-v1") && !svg.contains("qa<1>"))
    // v3 is two generations from v1: its box is in the third column.
    #expect(svg.contains("<rect x=\"\(10 + 2 * 360)\""))
    #expect(Lineages.svg(model: "m", [version(1, "v1")]).contains("No version of m was trained"))
}

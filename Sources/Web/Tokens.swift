import Foundation
import Glibc
import ModelStore

/// Someone the API acts for: a user of this machine, so that the owner rules of the mount and the
/// audit trail apply to them as to a process of theirs.
public struct WebUser: Sendable, Equatable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32
    public init(name: String, uid: UInt32, gid: UInt32) { self.name = name; self.uid = uid; self.gid = gid }

    /// A user by name (`getpwnam`) or by number (their primary group when the user database knows
    /// them, else the same number); nil for a name nobody has.
    public static func resolve(_ user: String) -> WebUser? {
        if let pw = getpwnam(user) { return WebUser(name: user, uid: pw.pointee.pw_uid, gid: pw.pointee.pw_gid) }
        guard let uid = UInt32(user) else { return nil }
        if let pw = getpwuid(uid), let name = pw.pointee.pw_name {
            return WebUser(name: String(cString: name), uid: uid, gid: pw.pointee.pw_gid)
        }
        return WebUser(name: user, uid: uid, gid: uid)
    }
}

/// Why the tokens file is refused. The message names lines by number, never a token.
public struct TokensError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The admin's tokens file: one `token user` a line (`#` comments and blank lines skipped). It
/// is a list of secrets, so it must be the process owner's and readable by nobody else (0600).
public struct Tokens: Sendable {
    /// Shorter tokens could be guessed over the network.
    public static let minimumLength = 16
    private let users: [String: WebUser]
    /// Which reading of a file these are: marks computed for one serve until the file changes.
    let serial: Int
    private static let readings = Locked(0)

    init(users: [String: WebUser]) {
        self.users = users
        serial = Tokens.readings.withLock { $0 += 1; return $0 }
    }

    public var count: Int { users.count }

    /// Each token's user under the token's `mark` (what a session keeps of the token it was signed in with).
    func users(byMark mark: (String) -> String) -> [String: WebUser] {
        Dictionary(users.map { (mark($0.key), $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    /// Reads and checks the file at `path`.
    public static func load(path: String) throws(TokensError) -> Tokens {
        var st = stat()
        guard stat(path, &st) == 0 else { throw TokensError("cannot read the tokens file \(path): \(String(cString: strerror(errno)))") }
        guard st.st_uid == geteuid() else {
            throw TokensError("the tokens file \(path) is uid \(st.st_uid)'s, not this process's (\(geteuid())): refused")
        }
        guard st.st_mode & 0o777 == 0o600 else {
            throw TokensError("the tokens file \(path) has mode \(String(st.st_mode & 0o777, radix: 8)): it must be 600 (chmod 600 \(path))")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw TokensError("cannot read the tokens file \(path) as UTF-8 text") }
        return try parse(text, from: path)
    }

    /// The lines of a tokens file; `from` names it in errors.
    public static func parse(_ text: String, from file: String = "the tokens file") throws(TokensError) -> Tokens {
        var users: [String: WebUser] = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            let at = "\(file) line \(index + 1)"
            guard fields.count == 2 else { throw TokensError("\(at): expected 'TOKEN USER'") }
            let token = String(fields[0]), user = String(fields[1])
            guard token.count >= minimumLength else { throw TokensError("\(at): the token is shorter than \(minimumLength) characters") }
            guard users[token] == nil else { throw TokensError("\(at): the same token as an earlier line") }
            guard let resolved = WebUser.resolve(user) else { throw TokensError("\(at): no user \(user)") }
            users[token] = resolved
        }
        return Tokens(users: users)
    }

    /// The user of `token`, compared in constant time so that the answer's timing tells nothing.
    public func user(for token: String) -> WebUser? {
        let given = Array(token.utf8)
        var found: WebUser?
        for (known, user) in users where Tokens.same(Array(known.utf8), given) { found = user }
        return found
    }

    static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

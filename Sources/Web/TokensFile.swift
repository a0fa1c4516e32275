import Foundation
import Glibc
import ModelStore

/// Where the server's tokens come from, as they are now.
public protocol TokenSource: Sendable {
    func current() throws(TokensError) -> Tokens
}

/// Fixed tokens (tests, and what a file held when it was read).
extension Tokens: TokenSource {
    public func current() -> Tokens { self }
}

/// The admin's tokens file, read again whenever it changes (its inode, size or times): a token
/// removed from it stops working, and the sessions signed in with it end, on the next request,
/// without a restart. A file changed into one that is refused (a typo, mode 644) refuses every
/// token until it is fixed: keeping the old tokens would keep the one the admin meant to remove.
public final class TokensFile: TokenSource {
    public let path: String
    private let state: Locked<(seen: Identity, tokens: Result<Tokens, TokensError>)>

    /// What tells a changed file: an editor that writes a new file and renames it changes the
    /// inode; one that writes in place changes the size or the times.
    struct Identity: Equatable {
        var device: UInt64, inode: UInt64, size: Int64
        var modified: timespec, changed: timespec

        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            device = UInt64(st.st_dev); inode = UInt64(st.st_ino); size = Int64(st.st_size)
            modified = st.st_mtim; changed = st.st_ctim
        }

        static func == (a: Identity, b: Identity) -> Bool {
            a.device == b.device && a.inode == b.inode && a.size == b.size
                && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
                && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
        }
    }

    /// Reads the file; a server does not start on one that is refused.
    public init(path: String) throws(TokensError) {
        self.path = path
        let seen = Identity(path: path)
        let tokens = try Tokens.load(path: path)
        state = Locked((seen ?? Identity.missing, .success(tokens)))
    }

    public func current() throws(TokensError) -> Tokens {
        let now = Identity(path: path) ?? Identity.missing
        let result = state.withLock { state -> Result<Tokens, TokensError> in
            if state.seen != now {
                do throws(TokensError) { state.tokens = .success(try Tokens.load(path: path)) } catch { state.tokens = .failure(error) }
                state.seen = now
            }
            return state.tokens
        }
        return try result.get()
    }
}

extension TokensFile.Identity {
    /// A file that is not there: never equal to one that is.
    static let missing = TokensFile.Identity(unchecked: ())
    private init(unchecked: Void) {
        device = .max; inode = .max; size = -1
        modified = timespec(); changed = timespec()
    }
}

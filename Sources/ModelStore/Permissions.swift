import Foundation

/// What a Unix file system lets a user do with a file or directory of this owner and mode, for
/// checks the kernel does not make itself (what a job will do on a user's behalf later).
extension Ownership {
    public enum Access: Sendable { case read, write, search }

    /// The same rule as `allows(_:by:isDirectory:)`, the one the mount's `access` answers with:
    /// searching is asked of directories only.
    public func allows(_ access: Access, to who: Requester) -> Bool {
        switch access {
        case .read: return allows(R_OK, by: who, isDirectory: false)
        case .write: return allows(W_OK, by: who, isDirectory: false)
        case .search: return allows(X_OK, by: who, isDirectory: true)
        }
    }
}

extension Ownership.Requester {
    /// A user as the group database has them (their primary group and those `su` gives them).
    public static func user(uid: UInt32, gid: UInt32) -> Ownership.Requester {
        var groups: Set<UInt32> = [gid]
        if let pw = getpwuid(uid), let name = pw.pointee.pw_name {
            var count: Int32 = 64
            var list = [gid_t](repeating: 0, count: Int(count))
            if getgrouplist(name, gid, &list, &count) < 0 {
                list = [gid_t](repeating: 0, count: Int(count))
                _ = getgrouplist(name, gid, &list, &count)
            }
            groups.formUnion(list.prefix(Int(max(0, count))))
        }
        return Ownership.Requester(uid: uid, groups: groups)
    }
}

extension Ownership {
    /// What the kernel asks of a directory before an entry in it is made, removed or renamed (as
    /// `default_permissions` does on an `--allow-other` mount), for those who change the store
    /// without the kernel (the HTTP API): write and search on it and, when it is sticky, that the
    /// one asking owns it or the entry, or is root.
    public func allowsEntryChange(entryOwner: UInt32?, by who: Requester) -> Bool {
        guard allows(W_OK | X_OK, by: who, isDirectory: true) else { return false }
        guard mode & 0o1000 != 0, !who.isRoot else { return true }
        return who.uid == uid || who.uid == entryOwner
    }
}

extension Version {
    /// A version's note is its owner's (or root's) to set, as the write bit it shows says (the
    /// kernel checks that bit first on an `--allow-other` mount; this holds without one, and
    /// over HTTP). `defaultOwner`: whose a row from before owners is.
    public func checkMayAnnotate(uid: UInt32, defaultOwner: Ownership, model: String) throws(StoreError) {
        let owner = self.owner ?? defaultOwner
        guard uid == 0 || uid == owner.uid else {
            throw StoreError(.accessDenied, "only its owner (uid \(owner.uid)) or root sets the note of \(model)/\(fileName)")
        }
    }
}

import Glibc
import ModelStore

/// What the kernel checks before a mount of the store is asked anything (`default_permissions`
/// on an `--allow-other` mount, where `models/` is 1777 and a model directory has its owner's
/// mode), checked here for a user who changes the store over HTTP: the API refuses what the
/// mount would refuse them, with `EACCES` (403). The store's own rules come after, in the port.
struct Rights {
    let port: any StorePort

    /// Rows from before owners are the store's owner's, as the mount shows them.
    static func directory(_ m: Model) -> Ownership {
        m.owner ?? Ownership(uid: getuid(), gid: getgid(), mode: Ownership.defaultModelMode)
    }

    static func requester(_ user: WebUser) -> Ownership.Requester { .user(uid: user.uid, gid: user.gid) }

    /// `models/` is sticky: a model is renamed or deleted by its owner, the store's owner or root.
    func checkRemoveModel(_ m: Model, by user: WebUser, _ verb: String) throws(StoreError) {
        let models = Ownership(uid: getuid(), gid: getgid(), mode: 0o1777)
        guard models.allowsEntryChange(entryOwner: Rights.directory(m).uid, by: Rights.requester(user)) else {
            throw StoreError(.accessDenied, "\(user.name) may not \(verb) model \(m.name): it is uid \(Rights.directory(m).uid)'s")
        }
    }

    /// A model's type and note are attributes of its directory: its write bit for the one asking.
    func checkAnnotate(_ m: Model, by user: WebUser) throws(StoreError) {
        let dir = Rights.directory(m)
        guard dir.allows(W_OK, by: Rights.requester(user), isDirectory: true) else {
            throw StoreError(.accessDenied, "\(user.name) may not change model \(m.name): mode \(String(dir.mode, radix: 8)) of uid \(dir.uid) says no")
        }
    }

    /// A version or an alias made, renamed or removed: write and search on the model's directory.
    func checkEntryChange(_ m: Model, entryOwner: Ownership?, by user: WebUser, _ what: String) throws(StoreError) {
        let dir = Rights.directory(m)
        guard dir.allowsEntryChange(entryOwner: entryOwner?.uid ?? getuid(), by: Rights.requester(user)) else {
            throw StoreError(.accessDenied, "\(user.name) may not \(what): mode \(String(dir.mode, radix: 8)) of model \(m.name) (uid \(dir.uid)) says no")
        }
    }

    /// Reading a version's bytes: search on its model, read on the file; without a user, as nobody.
    func checkRead(_ m: Model, _ v: Version, by user: WebUser?) throws(StoreError) {
        let who = Rights.asker(user)
        let file = v.owner ?? Ownership(uid: getuid(), gid: getgid(), mode: Ownership.defaultFileMode)
        guard Rights.directory(m).allows(.search, to: who), file.allows(.read, to: who) else {
            throw StoreError(.accessDenied, "\(user?.name ?? "a request without a user") may not read \(m.name)/\(v.fileName)")
        }
    }

    /// Looking a version or an alias up by name (`stat models/<m>/<v>`): search on the model's
    /// directory; without a user, as nobody.
    func checkSearch(_ m: Model, by user: WebUser?) throws(StoreError) {
        let dir = Rights.directory(m)
        guard dir.allows(.search, to: Rights.asker(user)) else {
            throw StoreError(.accessDenied, "\(user?.name ?? "a request without a user") may not look inside model \(m.name): mode \(String(dir.mode, radix: 8)) of uid \(dir.uid) says no")
        }
    }

    static let nobody: UInt32 = 65534

    func checkNote(_ m: Model, _ v: Version, by user: WebUser) throws(StoreError) {
        try v.checkMayAnnotate(uid: user.uid, defaultOwner: Ownership(uid: getuid(), gid: getgid(), mode: Ownership.defaultFileMode), model: m.name)
    }
}

import Foundation

/// Who owns a model, a version or a dataset, and its permission bits, as `ls -l` shows them.
/// Rows from before owners (nil) belong to the mount's user with the default modes.
public struct Ownership: Sendable, Equatable, Codable {
    public var uid: UInt32
    public var gid: UInt32
    /// Permission bits (`0o7777` at most).
    public var mode: UInt32

    public init(uid: UInt32, gid: UInt32, mode: UInt32) {
        self.uid = uid; self.gid = gid; self.mode = mode
    }

    /// A model's directory: the creator's mode, as `mkdir` gives it (umask applied by the kernel).
    public static let defaultModelMode: UInt32 = 0o755
    /// Versions and datasets never change: read bits only.
    public static let defaultFileMode: UInt32 = 0o444
    public static let readBits: UInt32 = 0o444

    /// The mode a new version or dataset gets from the one `open(O_CREAT)` or `cp` asked for:
    /// its read bits (its owner always reads it).
    public static func fileMode(requested: UInt32) -> UInt32 { (requested & readBits) | 0o400 }

    /// Who asks for a change of owner or mode, as the rules need it.
    public struct Requester: Sendable, Equatable {
        public var uid: UInt32
        /// The primary group and the supplementary ones.
        public var groups: Set<UInt32>
        public init(uid: UInt32, groups: Set<UInt32>) { self.uid = uid; self.groups = groups }
        public var isRoot: Bool { uid == 0 }
    }

    /// The Unix answer to `access(2)` for `who`: the owner's bits, else the group's (primary or
    /// supplementary), else the others'; root reads and writes anything and executes a file only
    /// when some execute bit is set (a directory always). `mask`: `R_OK | W_OK | X_OK` bits.
    public func allows(_ mask: Int32, by who: Requester, isDirectory: Bool) -> Bool {
        let wanted = UInt32(mask) & 0o7
        if who.isRoot {
            return wanted & 0o1 == 0 || isDirectory || mode & 0o111 != 0
        }
        let bits = who.uid == uid ? (mode >> 6) & 0o7 : who.groups.contains(gid) ? (mode >> 3) & 0o7 : mode & 0o7
        return bits & wanted == wanted
    }

    /// What `chmod`, `chown` and `chgrp` may do, the same rules as any Unix file system: only
    /// root gives a file away (`chown`); the owner (or root) changes the group to one of their
    /// own groups, and the mode. A version's or dataset's mode keeps read bits only: write bits
    /// asked for are dropped (nothing writes a version; so `rsync -a`, `cp -p` and `install`
    /// succeed), execute and special bits are refused. Returns the new ownership; `EPERM` with
    /// the reason otherwise. Asking for what already is always succeeds.
    public func changed(mode newMode: UInt32?, uid newUID: UInt32?, gid newGID: UInt32?, by who: Requester,
                        isFile: Bool, what: String) throws(StoreError) -> Ownership {
        var next = self
        if let newUID, newUID != uid {
            guard who.isRoot else { throw StoreError(.notPermitted, "only root gives \(what) to another user (it is uid \(uid)'s)") }
            next.uid = newUID
        }
        if let newGID, newGID != gid {
            guard who.isRoot || (who.uid == uid && who.groups.contains(newGID)) else {
                throw StoreError(.notPermitted, "\(what) goes to group \(newGID) only by root, or by its owner when they are in it")
            }
            next.gid = newGID
        }
        if var m = newMode.map({ $0 & 0o7777 }) {
            if isFile {
                guard m & 0o7111 == 0 else {
                    throw StoreError(.notPermitted, "\(what) is never executable nor setuid: only its read bits can change")
                }
                m = m & Ownership.readBits
            }
            if m != mode {
                guard who.isRoot || who.uid == uid else {
                    throw StoreError(.notPermitted, "only its owner (uid \(uid)) or root changes the mode of \(what)")
                }
                next.mode = m
            }
        }
        return next
    }
}

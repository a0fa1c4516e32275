import Foundation
import Glibc

/// Which open files the kernel reads by itself (FUSE passthrough: reads and mmap go straight to a
/// local backing file), and under which backing id.
///
/// The kernel decides per inode, not per open (fs/fuse/iomode.c): while one open file of an inode
/// passes through, every other open of it must pass through to the same backing file, and while one
/// is open through the page cache none may pass through; an open breaking either rule fails with
/// EIO. So the first open of an inode with a whole local file registers that file and later opens
/// reuse its id, whatever their own reader holds (a version's bytes never change); an inode with an
/// open that came to the daemon stays with the daemon until that one is released. The counts here
/// drop at RELEASE, which the kernel sends after it let go of the file: they are never below the
/// kernel's, so the table errs towards the daemon path, which is always allowed.
public final class PassthroughTable: @unchecked Sendable {
    /// Registers a backing file: its id (> 0) or -errno.
    public typealias Register = (_ fd: Int32) -> Int32
    public typealias Unregister = (_ id: Int32) -> Void

    struct Inode { var backingID: Int32 = 0; var passing = 0; var cached = 0 }

    private let lock = NSLock()
    private var inodes: [UInt64: Inode] = [:]
    private var handles: [UInt64: (inode: UInt64, passing: Bool)] = [:]
    private var offReason: String?
    private var refusalsSaid: Set<Int32> = []
    private let register: Register
    private let unregister: Unregister
    private let say: (String) -> Void

    /// `off`: why passthrough is not used at all on this mount (nil: it may be).
    public init(off: String?, register: @escaping Register, unregister: @escaping Unregister,
                say: @escaping (String) -> Void) {
        self.offReason = off
        self.register = register
        self.unregister = unregister
        self.say = say
    }

    /// Why passthrough is not used on this mount, or nil.
    public var off: String? { lock.withLock { offReason } }

    /// Turns passthrough off for the opens to come (files passing through keep doing so).
    public func turnOff(_ reason: String) { lock.withLock { if offReason == nil { offReason = reason } } }

    /// An open (or create) of `inode` answered with `handle`: the backing id to put in the reply,
    /// or 0 for the daemon path. `wholeFile`: a local file with all of the file's bytes, if any.
    public func opened(inode: UInt64, handle: UInt64, wholeFile: Int32?) -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        var state = inodes[inode] ?? Inode()
        var id: Int32 = 0
        if state.backingID > 0 {
            id = state.backingID
        } else if state.cached == 0, offReason == nil, let fd = wholeFile {
            let rc = register(fd)
            if rc > 0 { id = rc } else { refused(-rc) }
        }
        if id > 0 {
            state.backingID = id
            state.passing += 1
        } else {
            state.cached += 1
        }
        inodes[inode] = state
        handles[handle] = (inode, id > 0)
        return id
    }

    /// The last close of `handle`: the backing id is forgotten with the inode's last passing file.
    public func released(handle: UInt64) {
        lock.lock()
        defer { lock.unlock() }
        guard let (inode, passing) = handles.removeValue(forKey: handle), var state = inodes[inode] else { return }
        if passing { state.passing -= 1 } else { state.cached -= 1 }
        if state.passing == 0 && state.backingID > 0 {
            unregister(state.backingID)
            state.backingID = 0
        }
        inodes[inode] = state.passing == 0 && state.cached == 0 ? nil : state
    }

    /// Whether `handle` was opened with passthrough.
    public func passes(handle: UInt64) -> Bool { lock.withLock { handles[handle]?.passing ?? false } }

    /// The kernel refused a backing file: that open goes to the daemon. Refusals that hold for the
    /// whole mount turn passthrough off; each kind is said once, not at every open.
    private func refused(_ code: Int32) {
        let why = String(cString: strerror(code))
        switch code {
        case EPERM, ENOTTY, ENOSYS, EINVAL:
            // Not root, or a kernel without FUSE passthrough for this connection.
            offReason = "the kernel refused a backing file: \(why)"
            say("passthrough off: the kernel refused a backing file (\(why)); reads go through the daemon")
        default:
            // ELOOP: a backing file on a stacked file system (overlayfs); EOPNOTSUPP: on one whose
            // files cannot be read and written by iterators; EMFILE, ENOMEM: for now.
            if refusalsSaid.insert(code).inserted {
                say("passthrough refused for a file (\(why)); such files are read through the daemon")
            }
        }
    }
}

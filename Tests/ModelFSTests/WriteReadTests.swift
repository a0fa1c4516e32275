import Foundation
import Glibc
import Testing
import ModelStore
import ModelFS

@Suite struct WriteThenReadTests {
    @Test(arguments: [3 * MiB + 17, 17 * MiB])   // one PUT; a multipart upload of three parts
    func aWrittenVersionBecomesReadyAndReadsBack(_ size: Int) throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(size, seed: UInt64(size))
        let (inode, handle) = try env.create("models/X/v1.zip")

        // While uploading: listed with the bytes written so far, writable, not readable.
        try env.writeAll(handle, Array(data[0..<1_000_000]))
        #expect(try env.xattr(inode, "status") == "uploading")
        #expect(try env.fs.getattr(inode).size == 1_000_000)
        #expect(try env.fs.getattr(inode).permissions == 0o644)
        expectStoreError(.notReady) { try env.fs.open(inode, flags: OpenFlags(O_RDONLY)) }
        expectStoreError(.notReady) { try env.fs.read(handle, offset: 0, size: 10) }
        expectStoreError(.noAttribute) { try env.fs.getxattr(inode, name: "user.modelfs.sha256") }

        var offset = 1_000_000
        while offset < size {
            let n = min(1 * MiB + 3, size - offset)
            #expect(try env.write(handle, at: Int64(offset), data[offset..<(offset + n)]) == n)
            offset += n
        }
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        // The close by the writer completed it, before release.
        #expect(try env.xattr(inode, "status") == "ready")
        try env.fs.release(handle)

        #expect(try env.xattr(inode, "status") == "ready")
        #expect(try env.xattr(inode, "sha256") == sha256Hex(data))
        #expect(try env.xattr(inode, "size") == "\(size)")
        expectStoreError(.noAttribute) { try env.fs.getxattr(inode, name: "user.modelfs.error") }
        let attributes = try env.fs.getattr(inode)
        #expect(attributes.size == Int64(size) && !attributes.isDirectory && attributes.permissions == 0o644,
                "read bits, and its owner's note")
        let listing = try env.fs.readdir(try env.inode("models/X"))
        #expect(listing.map(\.name) == [".", "..", "v1.zip", "v1"], "the version and its archive view")
        #expect(listing[2].attributes.size == Int64(size) && listing[2].attributes.inode == inode)
        #expect(env.store.keys.contains("X/v1.zip"))
        #expect(env.store.pendingUploadCount == 0)

        // Sequential reads of odd sizes.
        let h = try env.fs.open(inode, flags: OpenFlags(O_RDONLY))
        #expect(h.keepCache)
        var got: [UInt8] = []
        while got.count < size {
            let chunk = try env.fs.read(h.handle, offset: Int64(got.count), size: 300_001)
            #expect(!chunk.isEmpty)
            if chunk.isEmpty { break }
            got += chunk
        }
        expectSame(got, data)
        #expect(try env.fs.read(h.handle, offset: Int64(size), size: 4096).isEmpty, "EOF")
        // Random offsets, some running past the end.
        var rng = SplitMix64(seed: 99)
        for _ in 0..<40 {
            let at = Int.random(in: 0..<size, using: &rng)
            let n = Int.random(in: 1...(256 * KiB), using: &rng)
            let chunk = try env.fs.read(h.handle, offset: Int64(at), size: n)
            expectSame(chunk, data[at..<min(at + n, size)], "read \(n) at \(at)")
        }
        try env.fs.release(h.handle)
        expectSame(try env.readAll(inode), data)
    }

    @Test func aFlushByAnotherProcessDoesNotCompleteTheFile() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(5000)
        let (inode, handle) = try env.create("models/X/v1.zip")
        // A shell's copy of the descriptor is closed before anything is written…
        try env.fs.flush(handle, pid: 777)
        #expect(try env.xattr(inode, "status") == "uploading")
        try env.writeAll(handle, data, chunk: 1000)
        // …and after: still not the writer's close.
        try env.fs.flush(handle, pid: 777)
        #expect(try env.xattr(inode, "status") == "uploading")
        #expect(try env.fs.getattr(inode).size == 5000)
        try env.fs.release(handle)
        #expect(try env.xattr(inode, "status") == "ready")
        #expect(try env.xattr(inode, "sha256") == sha256Hex(data))
        expectSame(try env.readAll(inode), data)
    }

    @Test func anEmptyFileCompletesAtRelease() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/empty.pt")
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        #expect(try env.xattr(inode, "status") == "uploading", "nothing written yet: the close may be an early one")
        try env.fs.release(handle)
        #expect(try env.xattr(inode, "status") == "ready")
        #expect(try env.xattr(inode, "size") == "0")
        #expect(try env.xattr(inode, "sha256") == sha256Hex([]))
        #expect(try env.fs.getattr(inode).size == 0)
        #expect(try env.readAll(inode).isEmpty)
        #expect(env.store.keys.contains("X/empty.pt"))
    }

    @Test func aTruncateToAnotherSizeFailsTheVersion() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(3000)
        let (inode, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, Array(data[0..<1000]))
        expectStoreError(.invalidArgument) { _ = try env.fs.setattr(inode, size: 10, mode: nil) }
        #expect(try env.xattr(inode, "status") == "failed")
        #expect(try !env.xattr(inode, "error").isEmpty)
        // Later writes, even at the right offset, are refused.
        expectStoreError(.invalidArgument) { try env.write(handle, at: 1000, data[1000..<2000]) }
        expectStoreError(.invalidArgument, "the close reports the failure") { try env.fs.flush(handle, pid: FSEnv.writerPid) }
        expectStoreError(.invalidArgument, "and so does the last close") { try env.fs.release(handle) }
        #expect(try env.xattr(inode, "status") == "failed")
        #expect(!env.store.keys.contains("X/v1.zip"), "no half object")
        #expect(env.store.pendingUploadCount == 0)
        expectStoreError(.io) { try env.fs.open(inode, flags: OpenFlags(O_RDONLY)) }
    }

    /// `cp` of a sparse file seeks over its holes: they are zeros in the version.
    @Test func aWritePastTheEndZeroFillsTheHole() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, pattern(1000))
        _ = try env.write(handle, at: 3_000_000, pattern(500)[...])
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        let expected = pattern(1000) + [UInt8](repeating: 0, count: 3_000_000 - 1000) + pattern(500)
        #expect(try env.xattr(inode, "status") == "ready")
        #expect(try env.xattr(inode, "sha256") == sha256Hex(expected))
        expectSame(try env.readAll(inode), expected)
    }

    /// A zip writer rewrites a member's header once the member is written: while those bytes are
    /// still in the part being filled, they are patched in place (and hashed as patched).
    @Test func aSeekBackIntoTheCurrentPartPatchesIt() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, pattern(2000))
        _ = try env.write(handle, at: 10, [UInt8](repeating: 7, count: 20)[...])
        _ = try env.write(handle, at: 1990, [UInt8](repeating: 9, count: 30)[...])  // over the end
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        var expected = pattern(2000)
        expected.replaceSubrange(10..<30, with: [UInt8](repeating: 7, count: 20))
        expected.replaceSubrange(1990..<2000, with: [UInt8](repeating: 9, count: 10))
        expected += [UInt8](repeating: 9, count: 20)
        #expect(try env.xattr(inode, "sha256") == sha256Hex(expected))
        expectSame(try env.readAll(inode), expected)
    }

    /// Further back than the part being filled, the file moves to the spool and is uploaded at
    /// close; without a spool the write is refused.
    @Test(arguments: [true, false])
    func aSeekBackIntoSentPartsUsesTheSpool(_ spool: Bool) throws {
        let env = try FSEnv(spoolBytes: spool ? 64 << 20 : nil)
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.zip")
        let size = 12 << 20
        try env.writeAll(handle, pattern(size))
        guard spool else {
            expectStoreError(.invalidArgument) { try env.write(handle, at: 5, [1, 2, 3][...]) }
            #expect(try env.xattr(inode, "status") == "failed")
            try? env.fs.release(handle)
            #expect(env.store.pendingUploadCount == 0)
            #expect(!env.store.keys.contains("X/v1.zip"), "nothing stays under the key")
            return
        }
        _ = try env.write(handle, at: 5, [1, 2, 3][...])
        _ = try env.write(handle, at: Int64(size), [4][...])
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        var expected = pattern(size)
        expected.replaceSubrange(5..<8, with: [1, 2, 3])
        expected.append(4)
        #expect(try env.xattr(inode, "status") == "ready")
        #expect(try env.xattr(inode, "sha256") == sha256Hex(expected))
        expectSame(try env.readAll(inode), expected)
        #expect(env.store.pendingUploadCount == 0)
    }

    /// The spool's cap: a seek back that needs more is `ENOSPC`, and the version fails cleanly.
    @Test func aFullSpoolIsNoSpace() throws {
        let env = try FSEnv(spoolBytes: 4 << 20)
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, pattern(12 << 20))
        expectStoreError(.noSpace) { try env.write(handle, at: 0, [1][...]) }
        #expect(try env.xattr(inode, "status") == "failed")
        try? env.fs.release(handle)
        #expect(env.store.pendingUploadCount == 0)
        #expect(!env.store.keys.contains("X/v1.zip"))
    }
}

@Suite struct SetattrTests {
    @Test func truncateToWhatWasWrittenIsAccepted() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(4000)
        let (inode, handle) = try env.create("models/X/v1.zip")
        #expect(try env.fs.setattr(inode, size: 0, mode: nil).size == 0, "O_TRUNC of a new file")
        try env.writeAll(handle, data)
        #expect(try env.fs.setattr(inode, size: 4000, mode: nil).size == 4000)
        #expect(try env.fs.setattr(inode, size: nil, mode: nil).inode == inode, "times only")
        #expect(try env.xattr(inode, "status") == "uploading")
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        expectSame(try env.readAll(inode), data)
    }

    @Test(arguments: [Int64(0), 3999])
    func truncateToAShorterSizeFailsTheWriter(_ size: Int64) throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, pattern(4000))
        expectStoreError(.invalidArgument) { try env.fs.setattr(inode, size: size, mode: nil) }
        #expect(try env.xattr(inode, "status") == "failed")
        expectStoreError(.invalidArgument) { try env.write(handle, at: 4000, pattern(10)[...]) }
        try? env.fs.release(handle)
        #expect(!env.store.keys.contains("X/v1.zip"))
        #expect(env.store.pendingUploadCount == 0)
    }

    /// `safetensors` sizes its file first, then writes it: a short extension is zeros in the
    /// stream, a long one moves the file to the spool; either way the version is what was written.
    @Test(arguments: [Int64(4001), 70 << 20])
    func aWriterThatSizesItsFileFirstGetsItsBytes(_ size: Int64) throws {
        let env = try FSEnv(spoolBytes: 256 << 20)
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.safetensors")
        _ = try env.fs.setattr(inode, size: size, mode: nil)
        #expect(try env.fs.getattr(inode).size == size)
        try env.writeAll(handle, pattern(4000))
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        let expected = pattern(4000) + [UInt8](repeating: 0, count: Int(size) - 4000)
        #expect(try env.xattr(inode, "status") == "ready")
        #expect(try env.xattr(inode, "sha256") == sha256Hex(expected))
        #expect(env.store.pendingUploadCount == 0)
    }

    @Test func sizesOfReadyFilesAreFixedAndModesChangeByTheRules() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(4000)
        let inode = try env.put("models/X/v1.zip", data)
        let someone = RequestContext(uid: 4321, gid: 4321, pid: 1)
        expectStoreError(.notPermitted) { try env.fs.setattr(inode, size: nil, mode: 0o555) }  // never executable
        expectStoreError(.notPermitted) { try env.fs.setattr(inode, size: nil, mode: 0o4444) }
        expectStoreError(.notPermitted) { try env.fs.setattr(inode, size: nil, mode: 0o400, someone) }  // not its owner
        expectStoreError(.notPermitted) { try env.fs.setattr(inode, size: nil, mode: nil, uid: 4321, someone) }
        expectStoreError(.notPermitted) { try env.fs.setattr(inode, size: nil, mode: nil, gid: 99, someone) }
        expectStoreError(.notPermitted) { try env.fs.setattr(inode, size: 0, mode: nil) }
        expectStoreError(.notPermitted) { try env.fs.setattr(inode, size: 4000, mode: nil) }
        expectStoreError(.notPermitted) { try env.fs.setattr(try env.inode("models"), size: nil, mode: 0o700) }
        // What it has, or only write bits more (dropped: nothing writes a version), succeeds. It shows
        // its owner's write bit whatever its mode: the kernel's condition for setting its note.
        #expect(try env.fs.setattr(inode, size: nil, mode: 0o444, someone).permissions == 0o644)
        #expect(try env.fs.setattr(inode, size: nil, mode: 0o664).permissions == 0o644)
        #expect(try env.registry.version("X", "v1").1.owner?.mode == 0o444, "stored: read bits only")
        #expect(try env.fs.setattr(inode, size: nil, mode: nil, uid: getuid(), gid: getgid()).uid == getuid())
        let attributes = try env.fs.setattr(inode, size: nil, mode: nil)
        #expect(attributes.size == 4000 && attributes.permissions == 0o644)
        #expect(try env.xattr(inode, "status") == "ready")
        expectSame(try env.readAll(inode), data)
    }

    /// docs/SEMANTICS.md: while the file is being written, a chmod keeps the read bits of any
    /// mode (`install -m 0755`, `cp -p` of an executable); once written, the rules apply.
    @Test func aWriterTakesTheReadBitsOfAnyModeAndAReadyVersionOnlyAllowedOnes() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(100)
        let (inode, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, data)
        #expect(try env.fs.setattr(inode, size: nil, mode: 0o750).permissions == 0o640, "read bits, and the writer's write bit")
        #expect(try env.xattr(inode, "status") == "uploading", "a chmod does not fail the upload")
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        #expect(try env.xattr(inode, "status") == "ready")
        #expect(try env.fs.getattr(inode).permissions == 0o640, "the mode asked for while written, and the note's bit")
        expectSame(try env.readAll(inode), data)
        // Once written, an executable mode is refused; read bits change.
        expectStoreError(.notPermitted) { try env.fs.setattr(inode, size: nil, mode: 0o750) }
        #expect(try env.fs.setattr(inode, size: nil, mode: 0o444).permissions == 0o644)
    }

    /// Issue 20: on an --allow-other mount only root could set a version's note (the kernel asks
    /// for write permission on the 0444 file). Its owner may (the file shows the owner's write
    /// bit); anyone else gets `EACCES`, from the kernel and from here alike; writes stay refused.
    @Test func aVersionsOwnerSetsItsNoteAndNoOneElse() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let inode = try env.put("models/X/v1.pt", pattern(100))
        let owner = RequestContext(uid: 5001, gid: 5001, pid: 1), other = RequestContext(uid: 5002, gid: 5001, pid: 1)
        _ = try env.fs.setattr(inode, size: nil, mode: 0o444, uid: 5001, gid: 5001)
        let a = try env.fs.getattr(inode)
        #expect(a.uid == 5001 && a.permissions == 0o644)
        try env.fs.setxattr(inode, name: "user.modelfs.note", value: Array("mine".utf8), owner)
        #expect(try env.xattr(inode, "note") == "mine")
        let note = "user.modelfs.note"
        expectStoreError(.accessDenied) { try env.fs.setxattr(inode, name: note, value: Array("theirs".utf8), other) }
        #expect(try env.xattr(inode, "note") == "mine")
        try env.fs.setxattr(inode, name: note, value: Array("root's".utf8), RequestContext(uid: 0, gid: 0, pid: 1))
        #expect(try env.xattr(inode, "note") == "root's")
        // The write bit lets nothing write it.
        expectStoreError(.alreadyExists) { try env.fs.open(inode, flags: OpenFlags(O_WRONLY | O_TRUNC), owner) }
        expectStoreError(.alreadyExists) { try env.fs.open(inode, flags: OpenFlags(O_RDONLY | O_TRUNC), owner) }
        expectStoreError(.notPermitted) { try env.fs.open(inode, flags: OpenFlags(O_RDWR), owner) }
        expectStoreError(.notPermitted) { try env.fs.setattr(inode, size: 0, mode: nil, owner) }
        expectSame(try env.readAll(inode), pattern(100))
    }

    @Test func aModelsOwnerChangesItsModeAndGroupAndOnlyRootGivesItAway() throws {
        let env = try FSEnv()
        let alice = RequestContext(uid: 5001, gid: 5001, pid: getpid())
        let bob = RequestContext(uid: 5002, gid: 5002, pid: getpid())
        let model = try env.fs.mkdir(parent: try env.inode("models"), name: bytes("shared"), { var c = alice; c.mode = 0o750; return c }())
        #expect(model.uid == 5001 && model.gid == 5001 && model.permissions == 0o750)
        #expect(try env.fs.setattr(model.inode, size: nil, mode: 0o755, alice).permissions == 0o755)
        expectStoreError(.notPermitted) { try env.fs.setattr(model.inode, size: nil, mode: 0o777, bob) }
        expectStoreError(.notPermitted) { try env.fs.setattr(model.inode, size: nil, mode: nil, uid: 5002, alice) }
        expectStoreError(.notPermitted) { try env.fs.setattr(model.inode, size: nil, mode: nil, gid: 5002, alice) }  // not her group
        let root = try env.fs.setattr(model.inode, size: nil, mode: nil, uid: 5002, gid: 5002)
        #expect(root.uid == 5002 && root.gid == 5002 && root.permissions == 0o755)
        #expect(try env.fs.getattr(try env.inode("models")).permissions == 0o1777, "anyone adds a model, owners remove theirs")
    }
}

@Suite struct OpenTests {
    @Test func aReadyVersionNeverOpensForWriting() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(1000)
        let inode = try env.put("models/X/v1.zip", data)
        expectStoreError(.alreadyExists) { try env.fs.open(inode, flags: OpenFlags(O_WRONLY | O_TRUNC)) }
        expectStoreError(.notPermitted) { try env.fs.open(inode, flags: OpenFlags(O_WRONLY)) }
        expectStoreError(.notPermitted) { try env.fs.open(inode, flags: OpenFlags(O_RDWR)) }
        expectStoreError(.notPermitted) { try env.fs.open(inode, flags: OpenFlags(O_WRONLY | O_APPEND)) }
        #expect(try env.xattr(inode, "status") == "ready")
        expectSame(try env.readAll(inode), data)
    }

    @Test func onlyReadyVersionsOpenForReading() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let (uploading, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, pattern(10))
        expectStoreError(.notReady) { try env.fs.open(uploading, flags: OpenFlags(O_RDONLY)) }

        let (failed, bad) = try env.create("models/X/v2.zip")
        try env.writeAll(bad, pattern(10))
        _ = try? env.fs.setattr(failed, size: 5, mode: nil)
        expectStoreError(.io) { try env.fs.open(failed, flags: OpenFlags(O_RDONLY)) }
        try? env.fs.release(bad)
        try env.fs.release(handle)
        #expect(try env.fs.open(uploading, flags: OpenFlags(O_RDONLY)).keepCache)
        expectStoreError(.isDirectory) { try env.fs.open(try env.inode("models/X"), flags: OpenFlags(O_RDONLY)) }
        expectStoreError(.notDirectory) { try env.fs.lookup(parent: uploading, name: bytes("a")) }
        expectStoreError(.notDirectory) { try env.fs.readdir(uploading) }
        expectStoreError(.badDescriptor) { try env.fs.read(987_654, offset: 0, size: 1) }
    }
}

@Suite struct CreateTests {
    @Test func createRefusesUnsupportedExtensionsAndBadNames() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let model = try env.inode("models/X")
        for name in ["v1.exe", "v1", "v1.gz", "v1.zip.bak", "\u{1}.zip", ".\u{1}"] {
            expectStoreError(.invalidArgument, "\(name)") {
                try env.fs.create(parent: model, name: bytes(name), flags: OpenFlags(O_WRONLY | O_CREAT), pid: 1)
            }
        }
        expectStoreError(.invalidArgument) { try env.fs.create(parent: model, name: [0xff, 0x2e, 0x7a, 0x69, 0x70], flags: OpenFlags(O_WRONLY), pid: 1) }
        let m = try #require(try env.catalog.model(named: "X"))
        #expect(try env.catalog.versions(modelID: m.id).isEmpty)
    }

    @Test func createRefusesAVersionThatExistsUnderAnyExtension() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(100)
        let v1 = try env.put("models/X/v1.zip", data)
        for name in ["v1.pth", "v1.tar.gz", "v1.zip"] {
            expectStoreError(.alreadyExists, "\(name)") { try env.create("models/X/" + name) }
        }
        #expect(try env.names(try env.inode("models/X")) == [".", "..", "v1.zip", "v1"])
        expectSame(try env.readAll(v1), data)
    }

    @Test func createOutsideAModelDirectoryIsNotPermitted() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        expectStoreError(.notPermitted) { try env.create("models/v1.zip") }
        expectStoreError(.notPermitted) { try env.create("v1.zip") }
        expectStoreError(.notPermitted) { try env.create("jobs/v1.zip") }
        #expect(env.store.keys.allSatisfy { $0.hasPrefix(".catalog/") })
    }

    @Test func createOfDotNextIsNotPermitted() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        do {
            expectStoreError(.notPermitted) { try env.create("models/X/.next") }
        }
        #expect(try env.content("models/X/.next") == "v1\n")
    }
}

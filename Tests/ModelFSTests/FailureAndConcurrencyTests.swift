import Dispatch
import Foundation
import Glibc
import Testing
import ModelStore
import Registry
import ReadPath
import ModelFS

@Suite struct ObjectStoreFailureTests {
    /// A part after the first fails: the close fails with EIO, the version is failed, nothing stays behind.
    @Test func aFailedPartFailsTheCloseAndLeavesNothing() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        env.store.injectFaults { op, _, part in
            op == .uploadPart && (part ?? 0) >= 2 ? .server(status: 500, code: "InternalError", message: "injected") : nil
        }
        let data = pattern(17 * MiB, seed: 3)   // three parts of 8 MiB at most
        let (inode, handle) = try env.create("models/X/v1.zip")
        var offset = 0
        var writeError: StoreError?
        while offset < data.count {
            let n = min(1 * MiB, data.count - offset)
            do { try env.write(handle, at: Int64(offset), data[offset..<(offset + n)]) } catch { writeError = error; break }
            offset += n
        }
        // The failure may surface at a write already (the part upload runs beside the writer); the close reports it in any case.
        if let writeError { #expect(writeError.code == .io, "\(writeError.message)") }
        expectStoreError(.io) { try env.fs.flush(handle, pid: FSEnv.writerPid) }
        expectStoreError(.io) { try env.fs.release(handle) }
        #expect(env.store.calls(.uploadPart) >= 2)
        #expect(try env.xattr(inode, "status") == "failed")
        #expect(try !env.xattr(inode, "error").isEmpty)
        #expect(!env.store.keys.contains("X/v1.zip"), "no half object")
        #expect(env.store.pendingUploadCount == 0, "the multipart upload was aborted")
        #expect(try env.catalog.uploads().isEmpty)
        expectStoreError(.io) { try env.fs.open(inode, flags: OpenFlags(O_RDONLY)) }
        #expect(try env.registry.manifest(of: "X").versions.first?.version.status == .failed)
    }

    @Test func aFailedPutFailsTheCloseOfASmallFile() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        env.store.injectFaults { op, key, _ in
            op == .put && key == "X/v1.zip" ? .unreachable("injected timeout") : nil
        }
        let (inode, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, pattern(100_000))
        expectStoreError(.io) { try env.fs.flush(handle, pid: FSEnv.writerPid) }
        try? env.fs.release(handle)
        #expect(try env.xattr(inode, "status") == "failed")
        #expect(!env.store.keys.contains("X/v1.zip"))
        #expect(env.store.pendingUploadCount == 0)
        // The store is back: a new version goes through.
        env.store.injectFaults(nil)
        let data = pattern(1000)
        let v2 = try env.put("models/X/v2.zip", data)
        expectSame(try env.readAll(v2), data)
    }

    @Test func aFailedReadIsAnIOErrorAndNotCached() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(500_000, seed: 8)
        let inode = try env.put("models/X/v1.zip", data)
        env.store.injectFaults { op, _, _ in op == .get ? .unreachable("injected") : nil }
        let handle = try env.fs.open(inode, flags: OpenFlags(O_RDONLY)).handle
        expectStoreError(.io) { try env.fs.read(handle, offset: 0, size: 128 * KiB) }
        env.store.injectFaults(nil)
        // The kernel's immediate retry of the same pages gets the same answer (one --s3-timeout in
        // all, not one per retry)...
        let getsBefore = env.store.calls(.get)
        expectStoreError(.io) { try env.fs.read(handle, offset: 0, size: 128 * KiB) }
        #expect(env.store.calls(.get) == getsBefore, "the retry within the window asks nothing of object storage")
        try env.fs.release(handle)
        // ...and nothing of the failure is cached: another open reads the bytes.
        let again = try env.fs.open(inode, flags: OpenFlags(O_RDONLY)).handle
        expectSame(try env.fs.read(again, offset: 0, size: 128 * KiB), data[0..<(128 * KiB)])
        try env.fs.release(again)
        expectSame(try env.readAll(inode), data)
    }
}

@Suite struct ConcurrentReadTests {
    @Test func eightReadersOfOneVersionFetchItOnce() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let size = 4 * MiB + 321
        let data = pattern(size, seed: 12)
        let inode = try env.put("models/X/v1.zip", data)
        #expect(env.cache.counters.bytesFetched == 0)
        let getsBefore = env.store.bytesRead
        let handles = try (0..<8).map { _ in try env.fs.open(inode, flags: OpenFlags(O_RDONLY)).handle }
        let failures = Collected<String>()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            var got: [UInt8] = []
            got.reserveCapacity(size)
            let chunk = 128 * KiB
            do {
                while true {
                    let part = try env.fs.read(handles[i], offset: Int64(got.count), size: chunk)
                    got += part
                    if part.count < chunk { break }
                }
                if !same(got, data) { failures.append("reader \(i): \(got.count) bytes differ") }
            } catch {
                failures.append("reader \(i): \(error)")
            }
        }
        for h in handles { try env.fs.release(h) }
        #expect(failures.all.isEmpty, "\(failures.all)")
        let fetched = env.cache.counters.bytesFetched
        #expect(fetched >= Int64(size))
        #expect(Double(fetched) <= 1.1 * Double(size), "fetched \(fetched) for a \(size)-byte version")
        #expect(Double(env.store.bytesRead - getsBefore) <= 1.1 * Double(size))
    }
}

@Suite struct StaleCacheTests {
    /// A version deleted and another created by the CLI (the registry, no mount) while the mount
    /// has the first cached: the catalog hands out the same id again, so the same inode and cache key.
    @Test func aNewVersionNeverReadsTheBytesOfADeletedOne() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        try env.put("models/X/v1.zip", pattern(100, seed: 1))
        let old = pattern(300_000, seed: 2)
        let v2 = try env.put("models/X/v2.zip", old)
        expectSame(try env.readAll(v2), old)

        // `modelfs rm` and `modelfs import` work on the store directly.
        try env.registry.deleteVersion("X", "v2")
        let fresh = pattern(300_000, seed: 3)
        let upload = try env.registry.beginVersion(model: "X", fileName: "v3.zip")
        try fresh.withUnsafeBytes { b in try upload.write(b) }
        try upload.finish()

        let v3 = try env.inode("models/X/v3.zip")
        let got = try env.readAll(v3)
        do {
            #expect(v3 != v2, "inode numbers are not reused")
            expectSame(got, fresh, "v3 reads its own bytes, not v2's")
        }
    }
}

@Suite struct InodeReuseTests {
    /// Through the mount alone: `rm v2.zip; cp … v3.zip`. The kernel keeps pages of ready files
    /// across opens (keep_cache), so a recycled inode number can show v2's pages as v3.
    @Test func anUnlinkedVersionsInodeIsNotGivenToTheNextOne() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        try env.put("models/X/v1.zip", pattern(100, seed: 1))
        let v2 = try env.put("models/X/v2.zip", pattern(100, seed: 2))
        try env.fs.unlink(parent: try env.inode("models/X"), name: bytes("v2.zip"))
        let data = pattern(100, seed: 3)
        let v3 = try env.put("models/X/v3.zip", data)
        expectSame(try env.readAll(v3), data, "the block cache was told to forget v2")
        do {
            #expect(v3 != v2)
        }
    }
}

@Suite struct MoreNamespaceTests {
    @Test func aFailedVersionCanBeRemoved() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, pattern(100))
        _ = try? env.fs.setattr(inode, size: 7, mode: nil)
        try? env.fs.release(handle)
        #expect(try env.xattr(inode, "status") == "failed")
        #expect(try env.names(try env.inode("models/X")) == [".", "..", "v1.zip"], "a failed version is listed")
        try env.fs.unlink(parent: try env.inode("models/X"), name: bytes("v1.zip"))
        #expect(try env.names(try env.inode("models/X")) == [".", ".."])
        // Its name is free again.
        let data = pattern(50)
        expectSame(try env.readAll(try env.put("models/X/v1.zip", data)), data)
    }

    @Test func aListingDuringUploadShowsTheBytesWrittenSoFar() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let (_, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, pattern(12_345))
        let entry = try #require(try env.fs.readdir(try env.inode("models/X")).first { $0.name == "v1.zip" })
        #expect(entry.attributes.size == 12_345)
        #expect(entry.attributes.cacheSeconds == 0, "a changing file is not cached by the kernel")
        try env.fs.release(handle)
        let ready = try #require(try env.fs.readdir(try env.inode("models/X")).first { $0.name == "v1.zip" })
        #expect(ready.attributes.size == 12_345)
        #expect(ready.attributes.cacheSeconds > 0)
    }

    @Test func rmdirDuringAnUploadIsBusyAndLeavesNoObjectBehind() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let (_, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, pattern(10_000))
        // The writer would complete into a model that is gone (or into a new one of that name).
        expectStoreError(.busy) { try env.fs.rmdir(parent: try env.inode("models"), name: bytes("X")) }
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        #expect(try env.catalog.model(named: "X").map { try env.catalog.versions(modelID: $0.id).map(\.status) } == [.ready])
        try env.fs.rmdir(parent: try env.inode("models"), name: bytes("X"))
        #expect(env.store.keys.isEmpty, "\(env.store.keys)")
        #expect(env.store.pendingUploadCount == 0)
        #expect(try env.catalog.models().isEmpty)
    }

    @Test func aDatasetIsRenamedWithinItsFormat() throws {
        let env = try FSEnv()
        let data = bytes("a\nb\n")
        let inode = try env.put("datasets/qa.txt", data)
        try env.put("datasets/other.csv", bytes("x\n"))
        let datasets = try env.inode("datasets")
        try env.fs.rename(parent: datasets, name: bytes("qa.txt"), newParent: datasets, newName: bytes("qa-v2.txt"))
        #expect(try env.inode("datasets/qa-v2.txt") == inode)
        expectSame(try env.readAll(inode), data)
        expectStoreError(.invalidArgument) { try env.fs.rename(parent: datasets, name: bytes("qa-v2.txt"), newParent: datasets, newName: bytes("qa.csv")) }
        expectStoreError(.alreadyExists) { try env.fs.rename(parent: datasets, name: bytes("qa-v2.txt"), newParent: datasets, newName: bytes("other.txt")) }
        try env.fs.unlink(parent: datasets, name: bytes("qa-v2.txt"))
        #expect(try env.names(datasets) == [".", "..", "other.csv"])
        #expect(!env.store.keys.contains(".datasets/qa.txt"))
    }
}

@Suite struct EndToEndTests {
    @Test func namesWithUnicodeSpacesAndURLCharactersWork() throws {
        let env = try FSEnv()
        let model = "千问-7B a+b%c?d#e&f"
        try env.mkdir(model)
        let data = pattern(70_000)
        let inode = try env.put("models/\(model)/v1 +%?#&.safetensors", data)
        #expect(try env.names(try env.inode("models/" + model)) == [".", "..", "v1 +%?#&.safetensors"])
        expectSame(try env.readAll(inode), data)
        #expect(env.store.keys.contains("\(model)/v1 +%?#&.safetensors"))
        #expect(try env.xattr(inode, "sha256") == sha256Hex(data))
    }

    @Test func sequentialReadsMakeFewerRequestsThanReads() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        // Past the first 4 MiB of a run (fetched as the kernel asks), prefetching takes over.
        let data = pattern(24 * MiB, seed: 31)
        let inode = try env.put("models/X/v1.zip", data)
        let gets = env.store.calls(.get)
        let chunk = 128 * KiB
        expectSame(try env.readAll(inode, chunk: chunk), data)
        let reads = data.count / chunk + 1
        let requests = env.store.calls(.get) - gets
        #expect(requests < reads / 2, "\(requests) GETs for \(reads) reads")
        #expect(env.cache.counters.bytesFetched == Int64(data.count))
    }

    @Test func aDeletedModelsNextFileIsGone() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let model = try env.inode("models/X")
        let next = try env.inode("models/X/.next")
        try env.fs.rmdir(parent: try env.inode("models"), name: bytes("X"))
        expectStoreError(.notFound) { try env.fs.getattr(model) }
        do {
            expectStoreError(.notFound) { try env.fs.getattr(next) }
            expectStoreError(.notFound) { try env.fs.lookup(parent: model, name: bytes(".next")) }
            expectStoreError(.notFound) { try env.fs.open(next, flags: OpenFlags(O_RDONLY)) }
        }
    }
}

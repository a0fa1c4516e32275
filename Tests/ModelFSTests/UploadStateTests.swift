import Dispatch
import Foundation
import Testing
import ModelStore
import ModelFS

/// A file being written, seen from other threads while its writer writes.
@Suite struct UploadStateTests {
    /// `stat` of a file being written reads its size from the upload while the writer streams,
    /// seeks back into sent parts (the spool) and writes on there. Run under the thread sanitizer
    /// (`swift test --sanitize=thread --filter UploadStateTests`): a size read outside the
    /// upload's lock is a data race it reports.
    @Test func statWhileWritingSeesTheSizeOnlyGrow() throws {
        let env = try FSEnv(spoolBytes: 64 << 20)
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.zip")
        let writing = Locked(true)
        let sizes = Collected<Int64>()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            while writing.withLock({ $0 }) {
                if let size = try? env.fs.getattr(inode).size { sizes.append(size) }
            }
        }
        let streamed = 10 << 20
        try env.writeAll(handle, pattern(streamed), chunk: 256 * KiB)
        _ = try env.write(handle, at: 0, [9][...])  // into a sent part: the spool from here on
        var expected = pattern(streamed)
        expected[0] = 9
        let more = pattern(4 << 20, seed: 2)
        for (i, at) in stride(from: 0, to: more.count, by: 256 * KiB).enumerated() {
            _ = try env.write(handle, at: Int64(streamed + at), more[at..<(at + 256 * KiB)])
            if i == 3 { _ = try env.write(handle, at: 1, [8][...]) }
        }
        expected[1] = 8
        expected += more
        writing.withLock { $0 = false }
        group.wait()
        #expect(try env.fs.getattr(inode).size == Int64(expected.count), "the size written so far")
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        let seen = sizes.all
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0 <= $1 }, "a file being written never shrinks")
        #expect(seen.allSatisfy { $0 <= Int64(expected.count) })
        #expect(try env.xattr(inode, "sha256") == sha256Hex(expected))
        expectSame(try env.readAll(inode), expected)
    }

    /// Every request that reaches object storage, by operation.
    static func requests(_ store: MemoryObjectStore) -> [MemoryObjectStore.Operation: Int] {
        let ops: [MemoryObjectStore.Operation] = [.get, .head, .put, .delete, .create, .uploadPart, .complete, .abort]
        return Dictionary(uniqueKeysWithValues: ops.map { ($0, store.calls($0)) })
    }

    /// A writer that sizes its file first and then fills in its header (as `safetensors` does)
    /// moves to the spool before its first part is sent: no request at all until the last close,
    /// which uploads the spool whole; nothing is read back.
    @Test func aSeekBackBeforeTheFirstPartIsSentSpoolsWithoutARequest() throws {
        let env = try FSEnv(spoolBytes: 256 << 20)
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.safetensors")
        let before = UploadStateTests.requests(env.store)
        let size = 80 << 20
        _ = try env.write(handle, at: 0, pattern(1000)[...])
        _ = try env.fs.setattr(inode, size: Int64(size), mode: nil)
        _ = try env.write(handle, at: Int64(size) - 2, [7, 7][...])
        _ = try env.write(handle, at: 0, [1][...])
        #expect(try env.fs.getattr(inode).size == Int64(size))
        #expect(UploadStateTests.requests(env.store) == before, "nothing sent yet, nothing read back")
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        #expect(env.store.calls(.get) == 0, "the close uploads the spool: nothing read back")
        var expected = pattern(1000) + [UInt8](repeating: 0, count: size - 1002) + [7, 7]
        expected[0] = 1
        #expect(try env.xattr(inode, "sha256") == sha256Hex(expected))
    }

    /// A writer that seeks back after parts were sent (a zip writer rewriting a member's
    /// header): what the spool kept of the sent parts becomes the file, the multipart upload is
    /// aborted, and nothing is completed nor read back (no GET) before the last close.
    @Test func aSeekBackAfterPartsWereSentReadsNothingBack() throws {
        let env = try FSEnv(spoolBytes: 256 << 20)
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.zip")
        var expected = pattern(3 * (8 << 20) + 100)
        try env.writeAll(handle, expected, chunk: 128 * KiB)
        #expect(eventually(seconds: 30) { env.store.calls(.uploadPart) >= 1 }, "a part reached object storage")
        _ = try env.write(handle, at: 5, [1, 2, 3][...])
        expected.replaceSubrange(5..<8, with: [1, 2, 3])
        #expect(env.store.calls(.get) == 0 && env.store.calls(.complete) == 0, "no round trip through object storage")
        #expect(env.store.calls(.abort) == 1 && env.store.pendingUploadCount == 0, "the parts sent are aborted")
        #expect(try env.fs.getattr(inode).size == Int64(expected.count))
        #expect(try env.xattr(inode, "size") == "\(expected.count)" && env.xattr(inode, "status") == "uploading",
                "getfattr reads the upload's state as stat does")
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        #expect(env.store.calls(.get) == 0 && env.store.calls(.complete) == 1)
        #expect(try env.xattr(inode, "sha256") == sha256Hex(expected))
        expectSame(try env.readAll(inode), expected)
    }
}

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
}

import Foundation
import Testing
import ModelStore
@testable import UploadPath

@Suite struct StreamingUploadTests {
    let store = MemoryObjectStore()
    let key = "千问-7B/v 1+%.zip"
    let sizing = PartSizing(base: partSize)

    func makeUpload(concurrency: Int = 2, hooks: UploadHooks = UploadHooks(), resume: ResumePoint? = nil) -> StreamingUpload {
        StreamingUpload(store: store, key: key, sizing: sizing, concurrency: concurrency, hooks: hooks, resume: resume)
    }

    /// Writes `data` in chunks of the given sizes, cycling through them.
    func write(_ data: [UInt8], to upload: StreamingUpload, chunks: [Int]) throws {
        var offset = 0, index = 0
        while offset < data.count {
            let n = min(chunks[index % chunks.count], data.count - offset)
            try upload.write(Array(data[offset..<offset + n]))
            offset += n
            index += 1
        }
    }

    // MARK: Sizes

    @Test func zeroBytesIsOnePutAndNoMultipart() throws {
        let up = makeUpload()
        let r = try up.finish()
        #expect(r.size == 0 && r.parts == 0)
        #expect(r.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(store.calls(.put) == 1)
        #expect(store.calls(.create) == 0 && store.calls(.uploadPart) == 0 && store.calls(.complete) == 0)
        #expect(same(try store.get(key, range: nil), []))
        #expect(up.multipartUploadID == nil)
    }

    @Test func oneByteIsOnePut() throws {
        let up = makeUpload()
        try up.write([0x42])
        #expect(up.bytesWritten == 1)
        let r = try up.finish()
        #expect(r.size == 1 && r.parts == 0 && r.sha256 == sha256Hex([0x42]))
        #expect(r.etag == md5Hex([0x42]))
        #expect(store.calls(.put) == 1 && store.calls(.create) == 0)
        #expect(same(try store.get(key, range: nil), [0x42]))
    }

    @Test func justUnderOnePartIsOnePut() throws {
        let data = randomBytes(partSize - 1)
        let up = makeUpload()
        try up.write(data)
        let r = try up.finish()
        #expect(r.parts == 0 && r.size == Int64(data.count) && r.sha256 == sha256Hex(data))
        #expect(store.calls(.put) == 1 && store.calls(.create) == 0)
        #expect(same(try store.get(key, range: nil), data))
    }

    @Test func onePartPlusOneByteIsMultipartWithTwoParts() throws {
        let data = randomBytes(partSize + 1)
        let up = makeUpload()
        try up.write(data)
        let r = try up.finish()
        #expect(r.parts == 2 && r.size == Int64(data.count) && r.sha256 == sha256Hex(data))
        #expect(store.calls(.create) == 1 && store.calls(.uploadPart) == 2 && store.calls(.complete) == 1)
        #expect(store.calls(.put) == 0)
        #expect(same(try store.get(key, range: nil), data))
        #expect(store.pendingUploadCount == 0)
    }

    @Test func exactMultipleOfPartSizeUploadsNoEmptyPart() throws {
        let data = randomBytes(2 * partSize)
        let up = makeUpload()
        try up.write(data)
        let r = try up.finish()
        #expect(r.parts == 2)
        #expect(store.calls(.uploadPart) == 2, "no empty third part")
        #expect(same(try store.get(key, range: nil), data))
    }

    @Test(arguments: [0, 1, partSize - 1, partSize, partSize + 1, 2 * partSize, 3 * partSize + 7])
    func storedObjectAndDigestMatchTheStream(_ size: Int) throws {
        let data = randomBytes(size)
        let up = makeUpload()
        try up.write(data)
        let r = try up.finish()
        #expect(r.size == Int64(size))
        #expect(r.sha256 == sha256Hex(data))
        #expect(same(try store.get(key, range: nil), data))
        #expect(store.pendingUploadCount == 0)
        #expect(r.parts == store.calls(.uploadPart))
        #expect(store.calls(.put) + store.calls(.complete) == 1, "exactly one request makes the object")
        #expect(r.parts == 0 || r.parts == (size + partSize - 1) / partSize)
    }

    @Test(arguments: [[7, MiB + 3, 1, 65_536, 3 * MiB + 1], [partSize - 1, 2], [4093, 7]])
    func oddChunkSizesGiveTheSameObjectAsOneWrite(_ chunks: [Int]) throws {
        let data = randomBytes(2 * partSize + 12_345)
        let oneShotStore = MemoryObjectStore()
        let oneShot = StreamingUpload(store: oneShotStore, key: key, sizing: sizing, concurrency: 2)
        try oneShot.write(data)
        let expected = try oneShot.finish()

        let up = makeUpload()
        try write(data, to: up, chunks: chunks)
        #expect(up.bytesWritten == Int64(data.count))
        let r = try up.finish()
        #expect(r.sha256 == expected.sha256)
        #expect(r.sha256 == sha256Hex(data))
        #expect(r.size == expected.size && r.parts == expected.parts)
        #expect(same(try store.get(key, range: nil), data))
        #expect(store.pendingUploadCount == 0)
    }

    // MARK: Failures

    struct Failure: Sendable, CustomTestStringConvertible {
        let error: ObjectStoreError, code: StoreError.Code
        var testDescription: String { "\(error) → \(code)" }
    }

    @Test(arguments: [
        Failure(error: .server(status: 500, code: "InternalError", message: "injected"), code: .io),
        Failure(error: .unreachable("injected"), code: .io),
        Failure(error: .noSpace("injected"), code: .noSpace),
    ])
    func partFailureFailsFinishAndAbortsTheUpload(_ failure: Failure) throws {
        store.injectFaults { op, _, part in op == .uploadPart && part == 2 ? failure.error : nil }
        let up = makeUpload()
        try up.write(randomBytes(2 * partSize + 1))     // cuts parts 1 and 2; never waits, so never throws
        expectStoreError(failure.code) { try up.finish() }
        #expect(up.error?.code == failure.code)
        #expect(store.calls(.complete) == 0)
        #expect(store.calls(.abort) >= 1)
        #expect(store.pendingUploadCount == 0, "the multipart upload was aborted")
        #expect(try store.head(key) == nil, "no object under the key")
        #expect(up.abortFailed == false)
    }

    @Test func writeThrowsOnceAPartFailed() throws {
        store.injectFaults { op, _, part in op == .uploadPart && part == 1 ? .server(status: 503, code: "SlowDown", message: "") : nil }
        // One part in flight at a time: cutting part 2 waits for part 1, and then sees its failure.
        let up = makeUpload(concurrency: 1)
        // Parts are cut when the next byte arrives: the second write cuts part 1, the third waits for it.
        try up.write(randomBytes(partSize))
        try up.write(randomBytes(partSize))
        expectStoreError(.io) { try up.write(randomBytes(partSize)) }
        expectStoreError(.io, "every later write fails too") { try up.write([1]) }
        #expect(up.abort() == true)
        #expect(store.pendingUploadCount == 0)
        #expect(try store.head(key) == nil)
    }

    @Test func finishAfterAFailedWriteThrowsAndAborts() throws {
        store.injectFaults { op, _, part in op == .uploadPart && part == 1 ? .server(status: 500, code: "InternalError", message: "") : nil }
        let up = makeUpload(concurrency: 1)
        // Parts are cut when the next byte arrives: the second write cuts part 1, the third waits for it.
        try up.write(randomBytes(partSize))
        try up.write(randomBytes(partSize))
        expectStoreError(.io) { try up.write(randomBytes(partSize)) }
        expectStoreError(.io) { try up.finish() }
        #expect(store.pendingUploadCount == 0)
        #expect(try store.head(key) == nil)
    }

    @Test func failingAbortIsReported() throws {
        store.injectFaults { op, _, part in
            (op == .uploadPart && part == 2) || op == .abort ? .server(status: 500, code: "InternalError", message: "injected") : nil
        }
        let up = makeUpload()
        try up.write(randomBytes(2 * partSize + 1))
        expectStoreError(.io) { try up.finish() }
        #expect(up.abortFailed == true)
        #expect(store.pendingUploadCount == 1, "the upload is still open")
        let id = try #require(up.multipartUploadID)
        #expect(try store.listMultipartUploads(prefix: "").map(\.uploadID) == [id])
        #expect(try store.head(key) == nil)
        // Once the store heals, the id is all it takes to clean up.
        store.injectFaults(nil)
        try store.abortMultipartUpload(key, uploadID: id)
        #expect(store.pendingUploadCount == 0)
    }

    @Test func failingCompleteAbortsTheUpload() throws {
        store.injectFaults { op, _, _ in op == .complete ? .server(status: 500, code: "InternalError", message: "") : nil }
        let up = makeUpload()
        try up.write(randomBytes(partSize + 10))
        expectStoreError(.io) { try up.finish() }
        #expect(store.pendingUploadCount == 0)
        #expect(try store.head(key) == nil)
    }

    @Test func failingPutOfASmallObject() throws {
        store.injectFaults { op, _, _ in op == .put ? .unreachable("injected") : nil }
        let up = makeUpload()
        try up.write(randomBytes(100))
        expectStoreError(.io) { try up.finish() }
        #expect(try store.head(key) == nil)
        #expect(store.calls(.create) == 0)
    }

    @Test func failingCreatedHookFailsTheWriteAndAbortCleansUp() throws {
        let hooks = UploadHooks(created: { (_, _) throws(StoreError) in throw StoreError(.noSpace, "catalog disk full") })
        let up = makeUpload(hooks: hooks)
        expectStoreError(.noSpace) { try up.write(randomBytes(partSize + 1)) }
        #expect(store.calls(.uploadPart) == 0, "no part goes out for an upload nobody remembers")
        #expect(up.abort() == true)
        #expect(store.pendingUploadCount == 0)
    }

    @Test func failingCreateFailsTheWriteAndFinish() throws {
        store.injectFaults { op, _, _ in op == .create ? .server(status: 403, code: "AccessDenied", message: "") : nil }
        let up = makeUpload()
        let data = randomBytes(partSize + 100)
        expectStoreError(.io) { try up.write(data) }
        // Nothing must be stored after a failed write: the stream lost bytes, and a "successful"
        // finish would report the size and sha256 of bytes that are not in the object.
        do {
            do {
                let r = try up.finish()
                Issue.record("finish succeeded after a failed write: says \(r.size) bytes, stored \(try store.head(key)?.size ?? -1)")
            } catch {
                #expect((error as? StoreError)?.code == .io)
            }
            let stored = try store.head(key)
            #expect(stored == nil)
        }
        #expect(store.pendingUploadCount == 0)
    }

    // MARK: Parallelism

    @Test func partsInFlightNeverExceedConcurrency() throws {
        let counter = InFlightCounter()
        let secondStarted = DispatchSemaphore(value: 0)
        store.injectFaults { op, _, part in
            guard op == .uploadPart else { return nil }
            counter.enter()
            defer { counter.leave() }
            // Part 1 stays in flight until part 2 has started, so two at once is certain when
            // the upload is parallel at all; the wait only ends early if it is not.
            if part == 1 { _ = secondStarted.wait(timeout: .now() + 10) }
            if part == 2 { secondStarted.signal() }
            Thread.sleep(forTimeInterval: 0.01)
            return nil
        }
        let data = randomBytes(8 * partSize + 1)
        let up = makeUpload(concurrency: 2)
        try write(data, to: up, chunks: [MiB])
        let r = try up.finish()
        #expect(r.parts == 9)
        #expect(counter.peak == 2, "parts in flight: at most 2, and 2 were")
        #expect(same(try store.get(key, range: nil), data))
    }

    // MARK: Hooks and resume

    @Test func hooksSeeTheUploadAndEveryPart() throws {
        let created = Box<[(String, PartSizing)]>([])
        let parts = Box<[UploadedPart]>([])
        let hooks = UploadHooks(created: { id, s in created.update { $0.append((id, s)) } },
                                partDone: { p in parts.update { $0.append(p) } })
        let data = randomBytes(3 * partSize + 99)
        let up = makeUpload(hooks: hooks)
        try write(data, to: up, chunks: [MiB + 3])
        let r = try up.finish()

        #expect(created.value.count == 1)
        #expect(created.value.first?.0 == up.multipartUploadID)
        #expect(created.value.first?.1 == sizing)
        let done = parts.value.sorted { $0.number < $1.number }
        #expect(done.map(\.number) == [1, 2, 3, 4])
        #expect(done.map(\.size) == [Int64(partSize), Int64(partSize), Int64(partSize), 99])
        for p in done {
            let start = (p.number - 1) * partSize
            #expect(p.etag == md5Hex(data[start..<min(start + partSize, data.count)]), "part \(p.number)")
        }
        #expect(r.parts == 4)
    }

    @Test func noHooksForASinglePut() throws {
        let calls = Box(0)
        let hooks = UploadHooks(created: { _, _ in calls.update { $0 += 1 } }, partDone: { _ in calls.update { $0 += 1 } })
        let up = makeUpload(hooks: hooks)
        try up.write(randomBytes(1000))
        _ = try up.finish()
        #expect(calls.value == 0)
    }

    /// Uploads the first `parts` parts of `data` and stops as a killed process would: no finish,
    /// no abort. Returns the resume point, read back the way a new process would.
    func interruptedUpload(_ data: [UInt8], parts: Int) throws -> ResumePoint {
        let created = Box<(String, PartSizing)?>(nil)
        let partDone = DispatchSemaphore(value: 0)
        let hooks = UploadHooks(created: { id, s in created.value = (id, s) }, partDone: { _ in partDone.signal() })
        let first = makeUpload(hooks: hooks)
        try first.write(Array(data[0..<min(parts * partSize + 100, data.count)]))
        for _ in 0..<parts { try #require(partDone.wait(timeout: .now() + 60) == .success) }
        let (id, sizing) = try #require(created.value)
        #expect(id == first.multipartUploadID)
        let stored = try store.listParts(key, uploadID: id)
        #expect(stored.map(\.number) == Array(1...parts))
        return ResumePoint(uploadID: id, sizing: sizing, parts: stored)
    }

    @Test func resumeUploadsOnlyTheMissingParts() throws {
        let data = randomBytes(4 * partSize + 1000)
        let point = try interruptedUpload(data, parts: 3)
        #expect(store.calls(.uploadPart) == 3)

        // The new run is given another sizing on purpose: the resume point's must win.
        let second = StreamingUpload(store: store, key: key, sizing: .standard, concurrency: 2, resume: point)
        try write(data, to: second, chunks: [MiB + 3])
        let r = try second.finish()
        #expect(store.calls(.uploadPart) == 3 + 2, "only parts 4 and 5 were uploaded again")
        #expect(store.calls(.create) == 1)
        #expect(r.parts == 5)
        #expect(r.size == Int64(data.count))
        #expect(r.sha256 == sha256Hex(data))
        #expect(same(try store.get(key, range: nil), data))
        #expect(store.pendingUploadCount == 0)
    }

    @Test func resumeReuploadsAPartWhoseBytesChanged() throws {
        var data = randomBytes(3 * partSize + 10)
        let point = try interruptedUpload(data, parts: 3)
        data[partSize + 5] ^= 0xFF                       // part 2 differs now
        let second = makeUpload(resume: point)
        try second.write(data)
        let r = try second.finish()
        #expect(store.calls(.uploadPart) == 3 + 2, "part 2 again, and the last part")
        #expect(r.sha256 == sha256Hex(data))
        #expect(same(try store.get(key, range: nil), data))
    }

    @Test func resumeWithEverythingAlreadyUploaded() throws {
        let data = randomBytes(2 * partSize)
        let point = try interruptedUpload(data + randomBytes(100), parts: 2)
        let second = makeUpload(resume: point)
        try second.write(data)
        let r = try second.finish()
        #expect(store.calls(.uploadPart) == 2, "nothing left to upload")
        #expect(r.parts == 2)
        #expect(same(try store.get(key, range: nil), data))
    }

    /// A writer that cannot send the stored parts again (a client over HTTP) goes on after them:
    /// only the rest is uploaded, and the sha256 (read back) is the whole file's.
    @Test func continueAfterStoredPartsTakesOnlyTheRest() throws {
        let data = randomBytes(4 * partSize + 1000)
        let point = try interruptedUpload(data, parts: 3)
        #expect(point.wholeParts.map(\.number) == [1, 2, 3])
        let second = makeUpload(resume: point)
        #expect(second.continueAfterStoredParts() == Int64(3 * partSize))
        #expect(second.bytesWritten == Int64(3 * partSize))
        try write(Array(data[(3 * partSize)...]), to: second, chunks: [MiB + 3])
        let r = try second.finish()
        #expect(store.calls(.uploadPart) == 3 + 2, "parts 4 and 5 only")
        #expect(r.size == Int64(data.count))
        #expect(r.sha256 == sha256Hex(data))
        #expect(same(try store.get(key, range: nil), data))
        #expect(store.pendingUploadCount == 0)
    }

    /// A part missing in the middle (its upload failed) ends the run of whole parts there.
    @Test func wholePartsStopAtTheFirstGapOrShortPart() {
        let full = Int64(partSize)
        let gap = ResumePoint(uploadID: "u", sizing: sizing, parts: [UploadedPart(number: 1, etag: "a", size: full), UploadedPart(number: 3, etag: "c", size: full)])
        #expect(gap.wholeParts.map(\.number) == [1])
        let short = ResumePoint(uploadID: "u", sizing: sizing, parts: [UploadedPart(number: 1, etag: "a", size: full - 1)])
        #expect(short.wholeParts.isEmpty)
    }

    /// A writer gone mid-stream: the multipart upload stays open with its parts, nothing aborted.
    @Test func leaveKeepsTheMultipartUploadForAResume() throws {
        let data = randomBytes(2 * partSize + 5000)
        let up = makeUpload()
        try up.write(data)
        up.leave()
        let id = try #require(up.multipartUploadID)
        #expect(try store.listParts(key, uploadID: id).map(\.number) == [1, 2])
        #expect(store.pendingUploadCount == 1)
        #expect(store.calls(.abort) == 0)
    }
}

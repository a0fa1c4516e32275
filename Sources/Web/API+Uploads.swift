import Foundation
import Glibc
import HTTPTypes
import Hummingbird
import ModelStore
import Registry

/// Uploads over HTTP: a version's bytes streamed into the same multipart upload as
/// `modelfs import` (``Registry/beginVersion(model:fileName:note:lineage:source:owner:)``), the
/// version `uploading` until the last byte is stored, then `ready` with its sha256. A client
/// that goes away mid-body leaves it `uploading` with the whole parts object storage holds;
/// `GET …/upload` says how many bytes those are, and a `PUT` with `Content-Range` sends the rest.
extension API {
    static let uploadEndpoints: [Endpoint] = [
        Endpoint(method: .put, path: "/api/v1/models/{model}/versions/{version}/content", handler: { _ in { _ in throw WebError(.notFound, "streamed") } },
                 streamed: { api, call, body in try await api.upload(call, body) }),
        Endpoint(method: .get, path: "/api/v1/models/{model}/versions/{version}/upload", handler: API.uploadState),
        Endpoint(method: .delete, path: "/api/v1/models/{model}/versions/{version}/upload", handler: API.abandonUpload),
    ]

    /// Where an upload over HTTP comes from, in the catalog's record of its multipart upload:
    /// recovery leaves an upload with a source `uploading` (resumable), as it does imports.
    static let uploadSource = "(an upload over HTTP)"

    /// Versions whose bytes a request of this process streams now: a second `PUT` of one is
    /// refused (its resume would take the multipart upload from under the first).
    static let uploadsInFlight = Locked<Set<VersionID>>([])

    /// The bytes a `PUT` is given per hand-over to the upload's thread.
    static let uploadChunk = 1 << 20

    struct UploadProgress: Encodable, Sendable { var received: Int64; var size: Int64?; var status: UploadStatus }

    /// How much of a version object storage holds: for an interrupted upload, its whole parts (where
    /// a `PUT` with `Content-Range` goes on from); `size` is the upload's (nil before its first part).
    func uploadState(_ call: Call) throws -> Answer {
        let m = try port.model(called: call.parameter("model"))
        let v = try port.version(called: call.parameter("version"), in: m)
        if v.status == .ready { return (.ok, UploadProgress(received: v.size, size: v.size, status: v.status)) }
        let (received, size) = try registry.storedPrefix(of: v)
        return (.ok, UploadProgress(received: received, size: size, status: v.status))
    }

    /// Gives up an interrupted upload, as `rm` of the version would once it had ended: the parts
    /// stored are dropped (the multipart upload aborted) and the version deleted. Not while a
    /// request or another process writes it (`EBUSY`).
    func abandonUpload(_ call: Call) throws -> Answer {
        let user = try call.who
        let m = try port.model(called: call.parameter("model"))
        let v = try port.version(called: call.parameter("version"), in: m)
        guard v.status == .uploading else {
            throw StoreError.invalid("\(m.name)/\(v.fileName) is \(v.status.rawValue), not uploading: DELETE the version itself")
        }
        try rights.checkEntryChange(m, entryOwner: v.owner, by: user, "delete \(m.name)/\(v.fileName)")
        guard API.uploadsInFlight.withLock({ $0.insert(v.id).inserted }) else {
            throw StoreError(.busy, "\(m.name)/\(v.fileName) is being uploaded by another request now")
        }
        defer { _ = API.uploadsInFlight.withLock { $0.remove(v.id) } }
        try acting(user) { () throws(StoreError) in try registry.abandonUpload(of: v, model: m.name, reason: "its upload was given up by \(user.name)") }
        let gone = try port.deleteVersion(v.id, by: actor(user)).row
        return (.ok, versionRow(gone, aliases: [], evaluations: []))
    }

    /// `Content-Range: bytes A-B/S` of an upload: the body holds bytes A…B of an S-byte file.
    struct UploadRange: Equatable, Sendable {
        var start: Int64
        var total: Int64
        var given: Bool

        /// The range a body of `length` bytes covers: all of the file without a `Content-Range`.
        static func parse(_ header: String?, length: Int64) throws(StoreError) -> UploadRange {
            guard let header else { return UploadRange(start: 0, total: length, given: false) }
            let usage = "Content-Range is 'bytes FIRST-LAST/SIZE' (GET …/upload says where to resume), not '\(header)'"
            guard header.hasPrefix("bytes ") else { throw .invalid(usage) }
            let spec = header.dropFirst("bytes ".count).trimmingCharacters(in: .whitespaces)
            let halves = spec.split(separator: "/", omittingEmptySubsequences: false)
            guard halves.count == 2, let total = Int64(halves[1]), total > 0 else { throw .invalid(usage) }
            let ends = halves[0].split(separator: "-", omittingEmptySubsequences: false)
            guard ends.count == 2, let first = Int64(ends[0]), let last = Int64(ends[1]), first >= 0, first <= last else { throw .invalid(usage) }
            guard last == total - 1 else {
                throw .invalid("Content-Range \(spec) stops before the end: a resumed upload sends the rest of the file, to byte \(total - 1)")
            }
            guard last - first + 1 == length else {
                throw .invalid("Content-Range \(spec) is \(last - first + 1) bytes but Content-Length says \(length)")
            }
            return UploadRange(start: first, total: total, given: true)
        }
    }

    /// The version's file name: `v2.zip` names its format; `v2` takes `?format=`.
    static func uploadFileName(_ version: String, format: String?) throws(StoreError) -> String {
        if let format, !format.isEmpty { return version + "." + format }
        guard (try? Formats.splitVersion(version)) != nil else {
            throw .invalid("\(Names.printable(version)) names no format: PUT …/versions/\(Names.printable(version)).zip/content, or add ?format=zip "
                           + "(zip, tar, tar.gz, pth, pt, ckpt, safetensors)")
        }
        return version
    }

    /// `PUT …/content`: the body streamed into the upload as it arrives, never held whole. Answers
    /// the ready version (201). A body that ends short (the client went away) leaves the version
    /// `uploading`, resumable from its last whole part.
    func upload(_ call: Call, _ body: RequestBody) async throws -> Answer {
        let length: Int64, range: UploadRange, upload: ItemUpload, versionID: VersionID, user: WebUser
        do {
            user = try call.who
            guard let given = call.headers[.contentLength].flatMap({ Int64($0) }), given >= 0 else {
                throw WebError(.lengthRequired, "an upload needs Content-Length: the number of bytes of the body")
            }
            length = given
            range = try UploadRange.parse(call.headers[.contentRange], length: length)
            (upload, versionID) = try await offloaded { [range, user] in try beginUpload(call, user: user, range: range) }
        } catch {
            await API.discard(body)
            throw error
        }
        defer { _ = API.uploadsInFlight.withLock { $0.remove(versionID) } }
        var received: Int64 = 0
        do {
            var chunk: [UInt8] = []
            chunk.reserveCapacity(API.uploadChunk)
            for try await buffer in body {
                chunk.append(contentsOf: buffer.readableBytesView)
                received += Int64(buffer.readableBytes)
                if chunk.count >= API.uploadChunk {
                    let full = chunk
                    try await offloaded { try full.withUnsafeBytes { try upload.write($0) } }
                    chunk = []
                    chunk.reserveCapacity(API.uploadChunk)
                }
            }
            let rest = chunk
            try await offloaded { try rest.withUnsafeBytes { try upload.write($0) } }
        } catch let failed as StoreError {
            throw failed  // object storage refused a part: the upload is failed, as an import's would be
        } catch {
            received = -1  // the connection broke: what is stored stays for a resume
        }
        guard received == length else {
            let stored = range.start + max(received, 0)
            await leave(upload, "the client went away after \(stored) of \(range.total) bytes")
            throw WebError(.badRequest, "the body ended after \(max(received, 0)) of \(length) bytes: the version stays uploading; "
                           + "GET …/upload says where to resume")
        }
        let api = self
        return try await offloaded {
            var v = try upload.finishVersion()
            // A resumed upload's note: the one its first request gave, unless this one gives another.
            if let note = call.query["note"], note != v.note { v = try api.port.setVersionNote(v.id, note: note, by: api.actor(user)) }
            return (.created, api.versionRow(v, aliases: try api.port.aliases(of: v.modelID), evaluations: []))
        }
    }

    /// The body of an upload refused before it started, read to its end and dropped: the client
    /// is still sending, and reads the refusal only once it has sent it all (a browser, curl,
    /// urllib), instead of stalling on a full socket.
    static func discard(_ body: RequestBody) async {
        do { for try await _ in body {} } catch {}
    }

    private func leave(_ upload: ItemUpload, _ reason: String) async {
        _ = try? await offloaded { upload.leaveForResume(reason: reason) }
    }

    /// A new version (no `Content-Range`, or one from byte 0 of a version not there yet), or the
    /// rest of an interrupted one, as the user who asks and with the rights a `cp` into the mount
    /// needs. Returns the upload, at the offset the body starts at.
    private func beginUpload(_ call: Call, user: WebUser, range: UploadRange) throws -> (ItemUpload, VersionID) {
        let m = try port.model(called: call.parameter("model"))
        let named = call.parameter("version")
        let existing = range.given ? try port.version(in: m.id, named: (try? Formats.splitVersion(named).name) ?? named) : nil
        guard let v = existing else {
            guard range.start == 0 else { throw StoreError.notFound("no version \(Names.printable(named)) of \(m.name) to resume: send it from byte 0") }
            let fileName = try API.uploadFileName(named, format: call.query["format"])
            try rights.checkEntryChange(m, entryOwner: nil, by: user, "add \(m.name)/\(Names.printable(fileName))")
            let owner = Ownership(uid: user.uid, gid: user.gid, mode: Ownership.defaultFileMode)
            let upload = try acting(user) { () throws(StoreError) in
                try registry.beginVersion(model: m.name, fileName: fileName, note: call.query["note"] ?? "", source: (API.uploadSource, range.total), owner: owner)
            }
            guard case .version(_, let v) = upload.item else { preconditionFailure("a version's upload") }
            API.uploadsInFlight.withLock { _ = $0.insert(v.id) }
            return (upload, v.id)
        }
        if v.status == .ready { throw StoreError.exists("\(m.name)/\(v.fileName) is already complete") }
        try rights.checkResume(m, v, by: user)
        let (stored, size) = try registry.storedPrefix(of: v)
        if let size, size != range.total {
            throw StoreError.invalid("\(m.name)/\(v.fileName) was begun as \(size) bytes, not \(range.total): upload the file as a new version")
        }
        guard API.uploadsInFlight.withLock({ $0.insert(v.id).inserted }) else {
            throw StoreError(.busy, "\(m.name)/\(v.fileName) is being uploaded by another request now")
        }
        do {
            guard stored == range.start || v.status == .failed && range.start == 0 else { throw API.wrongOffset(m, v, stored, range) }
            let upload = try acting(user) { () throws(StoreError) in
                try registry.resumeVersion(model: m.name, version: v.name, source: (API.uploadSource, range.total))
            }
            let offset = upload.continueAfterStoredParts()
            guard offset == range.start else {
                upload.leaveForResume(reason: "resumed at \(range.start), not where the store is")
                throw API.wrongOffset(m, v, offset, range)
            }
            return (upload, v.id)
        } catch {
            _ = API.uploadsInFlight.withLock { $0.remove(v.id) }
            throw error
        }
    }

    static func wrongOffset(_ m: Model, _ v: Version, _ stored: Int64, _ range: UploadRange) -> WebError {
        WebError(.conflict, "the store holds \(stored) bytes of \(m.name)/\(v.fileName), not \(range.start): send Content-Range: bytes \(stored)-\(range.total - 1)/\(range.total)")
    }
}

extension Rights {
    /// Going on writing a version: what writing to the file needs through the mount (its write
    /// bit for the one asking, and search on the model's directory).
    func checkResume(_ m: Model, _ v: Version, by user: WebUser) throws(StoreError) {
        let file = v.owner ?? Ownership(uid: getuid(), gid: getgid(), mode: Ownership.defaultFileMode)
        let who = Rights.requester(user)
        guard Rights.directory(m).allows(.search, to: who), file.allows(.write, to: who) else {
            throw StoreError(.accessDenied, "\(user.name) may not write \(m.name)/\(v.fileName): it is uid \(file.uid)'s, mode \(String(file.mode, radix: 8))")
        }
    }
}

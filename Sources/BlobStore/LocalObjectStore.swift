import Foundation
import Glibc
import ModelStore

/// Objects as files under a directory: the embedded default, no server needed.
///
/// Layout: `objects/<key>` holds each object; `multipart/<upload-id>/` holds a started upload
/// (`key`, and one file per part). Writes go to a temporary file that is fsynced and renamed, so a
/// crash never leaves a half object under its key. ETags of whole objects from HEAD and LIST are
/// change tokens (size and mtime), not MD5s; parts return their MD5 as S3 does.
public final class LocalObjectStore: ObjectStore {
    public let root: String
    private var objects: String { root + "/objects" }
    private var multipart: String { root + "/multipart" }
    private var tmp: String { root + "/tmp" }

    public init(root: String) throws(ObjectStoreError) {
        self.root = root
        for dir in [root, root + "/objects", root + "/multipart", root + "/tmp"] {
            try FileIO.makeDirectories(dir)
        }
    }

    public var location: String { "local directory \(root)" }

    /// The file holding `key`; keys with empty, `.` or `..` segments cannot escape the root.
    func path(for key: String) throws(ObjectStoreError) -> String {
        let segments = key.split(separator: "/", omittingEmptySubsequences: false)
        guard !key.isEmpty, !key.utf8.contains(0),
              segments.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw .other("invalid object key '\(key)'")
        }
        return objects + "/" + key
    }

    public func get(_ key: String, range: Range<Int64>?) throws(ObjectStoreError) -> [UInt8] {
        let file = try FileIO.open(try path(for: key), O_RDONLY, key: key)
        defer { close(file) }
        let size = try FileIO.size(file)
        let lower = min(range?.lowerBound ?? 0, size)
        let upper = min(range?.upperBound ?? size, size)
        return try FileIO.read(file, offset: lower, count: Int(upper - lower))
    }

    public func get(_ key: String, range: Range<Int64>, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) -> Int {
        let file = try FileIO.open(try path(for: key), O_RDONLY, key: key)
        defer { close(file) }
        let lower = max(range.lowerBound, 0)
        let count = min(Int(clamping: range.upperBound - lower), buffer.count)
        guard count > 0 else { return 0 }
        return try FileIO.read(file, offset: lower, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<count]))
    }

    /// Objects are plain files here, written once by rename and never modified.
    public func localFile(_ key: String) -> String? { try? path(for: key) }

    public func head(_ key: String) throws(ObjectStoreError) -> ObjectInfo? {
        var st = stat()
        guard stat(try path(for: key), &st) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw FileIO.error("stat \(key)")
        }
        return info(key: key, st)
    }

    private func info(key: String, _ st: stat) -> ObjectInfo {
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        return ObjectInfo(key: key, size: Int64(st.st_size), etag: String(st.st_size, radix: 16) + "-" + String(mtime, radix: 16),
                          lastModified: Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9))
    }

    @discardableResult
    public func put(_ key: String, _ bytes: [UInt8]) throws(ObjectStoreError) -> String {
        let target = try path(for: key)
        let temp = try FileIO.writeTemp(in: tmp, bytes)
        try publish(temp, as: target)
        return Digest.hex(Digest.md5(bytes))
    }

    /// Renames a finished temporary file onto its key, creating the key's directories.
    private func publish(_ temp: String, as target: String) throws(ObjectStoreError) {
        let dir = String(target[..<target.lastIndex(of: "/")!])
        do throws(ObjectStoreError) {
            try FileIO.makeDirectories(dir)
            guard rename(temp, target) == 0 else { throw FileIO.error("rename to \(target)") }
        } catch {
            unlink(temp)
            throw error
        }
    }

    public func delete(_ key: String) throws(ObjectStoreError) {
        let p = try path(for: key)
        if unlink(p) != 0 && errno != ENOENT && errno != ENOTDIR { throw FileIO.error("delete \(key)") }
        // Remove directories left empty, up to objects/.
        var dir = Substring(p)
        while let slash = dir.lastIndex(of: "/") {
            dir = dir[..<slash]
            if dir.count <= objects.count || rmdir(String(dir)) != 0 { break }
        }
    }

    public func list(prefix: String) throws(ObjectStoreError) -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        try walk(objects, relative: "", into: &out, prefix: prefix)
        return out.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
    }

    private func walk(_ dir: String, relative: String, into out: inout [ObjectInfo], prefix: String) throws(ObjectStoreError) {
        for name in try FileIO.entries(dir) {
            let key = relative.isEmpty ? name : relative + "/" + name
            // Skip subtrees that cannot match the prefix.
            guard key.hasPrefix(prefix) || prefix.hasPrefix(key + "/") else { continue }
            var st = stat()
            guard lstat(dir + "/" + name, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                try walk(dir + "/" + name, relative: key, into: &out, prefix: prefix)
            } else if key.hasPrefix(prefix) {
                out.append(info(key: key, st))
            }
        }
    }

    // MARK: Multipart

    public func createMultipartUpload(_ key: String) throws(ObjectStoreError) -> String {
        _ = try path(for: key)
        let id = FileIO.randomHex(16)
        try FileIO.makeDirectories(multipart + "/" + id)
        let temp = try FileIO.writeTemp(in: tmp, Array(key.utf8))
        guard rename(temp, multipart + "/" + id + "/key") == 0 else { throw FileIO.error("create upload") }
        return id
    }

    private func uploadDir(_ key: String, _ uploadID: String) throws(ObjectStoreError) -> String {
        guard uploadID.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }), !uploadID.isEmpty else {
            throw .notFound(key: key)
        }
        let dir = multipart + "/" + uploadID
        guard let stored = try? FileIO.readAll(dir + "/key"), String(decoding: stored, as: UTF8.self) == key else {
            throw .notFound(key: key)
        }
        return dir
    }

    public func uploadPart(_ key: String, uploadID: String, number: Int, _ bytes: [UInt8]) throws(ObjectStoreError) -> String {
        guard (1...10_000).contains(number) else { throw .server(status: 400, code: "InvalidArgument", message: "part number \(number)") }
        let dir = try uploadDir(key, uploadID)
        let temp = try FileIO.writeTemp(in: tmp, bytes, sync: false)
        guard rename(temp, dir + "/\(number)") == 0 else { unlink(temp); throw FileIO.error("store part \(number)") }
        return Digest.hex(Digest.md5(bytes))
    }

    @discardableResult
    public func completeMultipartUpload(_ key: String, uploadID: String, parts: [UploadedPart]) throws(ObjectStoreError) -> String {
        let dir = try uploadDir(key, uploadID)
        guard !parts.isEmpty, zip(parts, parts.dropFirst()).allSatisfy({ $0.number < $1.number }) else {
            throw .server(status: 400, code: "InvalidPartOrder", message: "parts must be given in ascending order")
        }
        let target = try path(for: key)
        // Refuse what S3 refuses, before anything changes: unknown or changed parts, small parts
        // before the last.
        for (index, part) in parts.enumerated() {
            guard let bytes = try? FileIO.readAll(dir + "/\(part.number)"), Digest.hex(Digest.md5(bytes)) == part.etag else {
                throw .server(status: 400, code: "InvalidPart", message: "part \(part.number)")
            }
            if index < parts.count - 1 && bytes.count < 5 << 20 {
                throw .server(status: 400, code: "EntityTooSmall", message: "part \(part.number) is \(bytes.count) bytes")
            }
        }
        let out = try FileIO.createTemp(in: tmp)
        do throws(ObjectStoreError) {
            for part in parts {
                let bytes = try FileIO.readAll(dir + "/\(part.number)")
                try bytes.withUnsafeBytes { b in Result { () throws(ObjectStoreError) in try FileIO.writeAll(out.fd, b) } }.get()
                // Each part goes as soon as it is in the object: completing needs the object's
                // size free plus one part, not twice the object (a completion that fails after
                // this is aborted; a resumed import uploads again what is gone).
                unlink(dir + "/\(part.number)")
            }
            guard fsync(out.fd) == 0 else { throw FileIO.error("fsync") }
            close(out.fd)
        } catch {
            close(out.fd); unlink(out.path)
            throw error
        }
        try publish(out.path, as: target)
        FileIO.removeTree(dir)
        return Digest.hex(Digest.md5(parts.flatMap { Digest.unhex($0.etag) })) + "-\(parts.count)"
    }

    public func abortMultipartUpload(_ key: String, uploadID: String) throws(ObjectStoreError) {
        guard let dir = try? uploadDir(key, uploadID) else { return }
        FileIO.removeTree(dir)
    }

    public func listParts(_ key: String, uploadID: String) throws(ObjectStoreError) -> [UploadedPart] {
        let dir = try uploadDir(key, uploadID)
        var parts: [UploadedPart] = []
        for name in try FileIO.entries(dir) {
            guard let number = Int(name) else { continue }
            let bytes = try FileIO.readAll(dir + "/" + name)
            parts.append(UploadedPart(number: number, etag: Digest.hex(Digest.md5(bytes)), size: Int64(bytes.count)))
        }
        return parts.sorted { $0.number < $1.number }
    }

    public func listMultipartUploads(prefix: String) throws(ObjectStoreError) -> [PendingUpload] {
        var out: [PendingUpload] = []
        for id in try FileIO.entries(multipart) {
            guard let key = try? FileIO.readAll(multipart + "/" + id + "/key") else { continue }
            let k = String(decoding: key, as: UTF8.self)
            guard k.hasPrefix(prefix) else { continue }
            var st = stat()
            stat(multipart + "/" + id, &st)
            out.append(PendingUpload(key: k, uploadID: id, initiated: Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec))))
        }
        return out.sorted { ($0.key, $0.uploadID) < ($1.key, $1.uploadID) }
    }
}

import Archive
import Foundation
import ModelStore
import ReadPath

/// The headers of safetensors files — versions, datasets, and `*.safetensors` members of
/// archives — parsed once per file and kept in the catalog: for their xattrs, and for reads that
/// fetch whole tensors.
final class TensorHeaders: Sendable {
    unowned let namespace: Namespace
    private let loaded = Locked<[String: Parsed]>([:])
    static let keep = 256
    /// The largest header shown whole as an xattr: the kernel's limit on a value (XATTR_SIZE_MAX).
    static let maxXattr = 65536
    /// The tensors the kept headers may hold together: a hostile header of 100,000 tensors is
    /// parsed, stored and let go rather than kept by the dozen.
    static let keepTensors = 200_000

    struct Parsed: Sendable {
        var sha256: String
        var header: SafetensorsHeader?
        var error: String?
    }

    init(namespace: Namespace) { self.namespace = namespace }

    /// The header of the safetensors file at `member` ("" for the whole object) of the object at
    /// `key`, read through `source` (the file's own bytes) when neither memory nor the catalog has it.
    func header(key: String, member: String = "", sha256: String, size: Int64, source: @autoclosure () -> any ByteSource) -> Parsed {
        let id = key + "\u{0}" + member
        if let hit = loaded.withLock({ $0[id] }), hit.sha256 == sha256 { return hit }
        var parsed: Parsed
        if let stored = try? namespace.store.tensorHeader(objectKey: key, member: member, sha256: sha256, size: size),
           let header = stored.body.flatMap({ try? SafetensorsHeader.decode(Array($0.utf8)) }) {
            parsed = Parsed(sha256: sha256, header: header)
        } else if let stored = try? namespace.store.tensorHeader(objectKey: key, member: member, sha256: sha256, size: size),
                  let error = stored.error {
            parsed = Parsed(sha256: sha256, error: error)
        } else {
            do {
                parsed = Parsed(sha256: sha256, header: try SafetensorsHeader.read(source()))
            } catch {
                if error.unreadable { return Parsed(sha256: sha256, error: error.reason) }  // no verdict: try again later
                parsed = Parsed(sha256: sha256, error: error.reason)
            }
            let body = parsed.header.map { String(decoding: $0.encoded(), as: UTF8.self) }
            do {
                try namespace.store.storeTensorHeader(objectKey: key, member: member,
                                                        StoredArchiveIndex(sha256: sha256, size: size, body: body, error: parsed.error))
            } catch {
                namespace.logger.warning("safetensors header of \(key) \(member) not stored: \(error)")
            }
        }
        loaded.withLock { all in
            if all.count >= TensorHeaders.keep, let victim = all.keys.first { all[victim] = nil }
            var tensors = all.values.reduce(0) { $0 + ($1.header?.tensors.count ?? 0) }
            while tensors + (parsed.header?.tensors.count ?? 0) > TensorHeaders.keepTensors, let victim = all.keys.first {
                tensors -= all[victim]?.header?.tensors.count ?? 0
                all[victim] = nil
            }
            all[id] = parsed
        }
        // Parsing a large header (Foundation's JSON objects) leaves freed heap the allocator keeps.
        if (parsed.header?.tensors.count ?? 0) > 10_000 || parsed.header?.jsonOmitted == true || parsed.error != nil { _ = trimHeap(0) }
        return parsed
    }

    /// Whole-tensor reads, unless `MODELFS_WHOLE_TENSORS=0` (for benchmarks: the read path without them).
    static let wholeTensors = ProcessInfo.processInfo.environment["MODELFS_WHOLE_TENSORS"] != "0"

    /// Where the tensors lie in the object, the file starting at `start` in it.
    static func layout(_ parsed: Parsed, start: Int64 = 0) -> TensorLayout? {
        guard wholeTensors, let header = parsed.header, !header.tensors.isEmpty else { return nil }
        return TensorLayout(tensors: header.tensors.map { (start + $0.begin)..<(start + $0.end) })
    }

    /// `user.modelfs.tensors`, `parameters`, `dtypes`, `safetensors_header` (the JSON, when it fits
    /// an xattr), or `safetensors_error`.
    static func xattrs(_ parsed: Parsed) -> [(String, String)] {
        guard let header = parsed.header else { return [("safetensors_error", parsed.error ?? "unreadable")] }
        var out = [("tensors", "\(header.tensors.count)"), ("parameters", "\(header.parameters)"),
                   ("dtypes", header.dtypes.joined(separator: ","))]
        if header.jsonOmitted != true, header.json.utf8.count <= maxXattr { out.append(("safetensors_header", header.json)) }
        return out
    }
}

extension Namespace {
    /// The header of a ready safetensors version or dataset, read through its object.
    func tensorHeader(of file: some StoredFile) -> TensorHeaders.Parsed {
        let key = file.objectKey, size = file.size
        return tensors.header(key: key, sha256: file.sha256 ?? key, size: size,
                              source: ReaderSource(reader: ObjectReaders.open(store: self.registry.objects, cache: self.cache, key: key,
                                                                              size: size, id: file.objectIdentity), size: size))
    }
}

/// glibc's `malloc_trim` (in `<malloc.h>`, which the Glibc module leaves out): gives freed heap back.
@_silgen_name("malloc_trim") private func trimHeap(_ pad: Int) -> Int32

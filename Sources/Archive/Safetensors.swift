import Foundation

/// The header of a safetensors file: an 8-byte little-endian length, then that many bytes of
/// JSON naming each tensor's dtype, shape and byte range (relative to the end of the header).
/// Parsed strictly: every range inside the file, none overlapping, sizes matching shapes.
public struct SafetensorsHeader: Codable, Equatable, Sendable {
    public struct Tensor: Codable, Equatable, Sendable {
        public var name: String
        public var dtype: String
        public var shape: [Int64]
        /// The tensor's bytes, from the start of the file.
        public var begin: Int64
        public var end: Int64

        public var elements: Int64 { shape.reduce(1, *) }
    }

    /// Bytes before the first tensor: 8 + the JSON's length.
    public var dataStart: Int64
    /// In file order.
    public var tensors: [Tensor]
    public var metadata: [String: String]
    /// The header's JSON as the file has it; empty when it is longer than `keptJSON` (no xattr can
    /// show it, and 10 MiB of it need not stay in memory).
    public var json: String
    public var jsonOmitted: Bool?
    public static let keptJSON = 65536

    public var parameters: Int64 { tensors.reduce(0) { $0 + $1.elements } }
    public var dtypes: [String] { Array(Set(tensors.map(\.dtype))).sorted() }

    /// The format's own limit on the header (safetensors refuses more than 100 MB).
    public static let maxHeader: Int64 = 100_000_000
    static let dtypeSizes: [String: Int64] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
    ]

    /// The header's length from the file's first 8 bytes, refused when it cannot fit.
    public static func headerLength(_ first8: [UInt8], fileSize: Int64) throws(ArchiveError) -> Int64 {
        guard first8.count >= 8 else { throw ArchiveError("not a safetensors file: shorter than 8 bytes") }
        let n = Fields(first8).u64(0)
        guard n <= UInt64(maxHeader), Int64(n) + 8 <= fileSize, n >= 2 else {
            throw ArchiveError("not a safetensors file: a header of \(n) bytes in a file of \(fileSize)")
        }
        return Int64(n)
    }

    /// Parses the header JSON (the `length` bytes after the first 8) of a file of `fileSize` bytes.
    public static func parse(_ json: [UInt8], fileSize: Int64) throws(ArchiveError) -> SafetensorsHeader {
        let dataStart = 8 + Int64(json.count)
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(json)) } catch {
            throw ArchiveError("the safetensors header is not JSON")
        }
        guard let top = object as? [String: Any] else { throw ArchiveError("the safetensors header is not a JSON object") }
        var tensors: [Tensor] = []
        var metadata: [String: String] = [:]
        for (name, value) in top {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw ArchiveError("__metadata__ is not an object") }
                for (k, v) in m { metadata[k] = (v as? String) ?? "\(v)" }
                continue
            }
            guard let t = value as? [String: Any], let dtype = t["dtype"] as? String, let shape = t["shape"] as? [Any],
                  let offsets = t["data_offsets"] as? [Any], offsets.count == 2 else {
                throw ArchiveError("tensor \(MemberPaths.printable(name)): needs dtype, shape and two data_offsets")
            }
            guard let size = dtypeSizes[dtype] else { throw ArchiveError("tensor \(MemberPaths.printable(name)): unknown dtype \(dtype)") }
            let dims = shape.compactMap(integer)
            let bounds = offsets.compactMap(integer)
            guard dims.count == shape.count, dims.allSatisfy({ $0 >= 0 }), bounds.count == 2, bounds.allSatisfy({ $0 >= 0 }) else {
                throw ArchiveError("tensor \(MemberPaths.printable(name)): shape and offsets must be non-negative integers")
            }
            var elements: Int64 = 1
            for d in dims {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw ArchiveError("tensor \(MemberPaths.printable(name)): a shape too large") }
                elements = p
            }
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: size)
            guard !overflow, bounds[0] <= bounds[1], bounds[1] - bounds[0] == bytes else {
                throw ArchiveError("tensor \(MemberPaths.printable(name)): \(bounds[1] - bounds[0]) bytes for its shape's \(bytes)")
            }
            guard bounds[1] <= fileSize - dataStart else {
                throw ArchiveError("tensor \(MemberPaths.printable(name)): its bytes lie past the end of the file")
            }
            tensors.append(Tensor(name: name, dtype: dtype, shape: dims, begin: dataStart + bounds[0], end: dataStart + bounds[1]))
        }
        tensors.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        for (a, b) in zip(tensors, tensors.dropFirst()) where b.begin < a.end {
            throw ArchiveError("tensors \(MemberPaths.printable(a.name)) and \(MemberPaths.printable(b.name)) overlap")
        }
        let kept = json.count <= keptJSON
        return SafetensorsHeader(dataStart: dataStart, tensors: tensors, metadata: metadata,
                                 json: kept ? String(decoding: json, as: UTF8.self) : "", jsonOmitted: kept ? nil : true)
    }

    /// Reads and parses the header of the file `source` holds.
    public static func read(_ source: some ByteSource) throws(ArchiveError) -> SafetensorsHeader {
        let n = try headerLength(try ZipReader.read(source, 0, 8), fileSize: source.size)
        let json = try ZipReader.read(source, 8, Int(n))
        guard json.count == Int(n) else { throw ArchiveError("the safetensors header is truncated") }
        return try parse(json, fileSize: source.size)
    }

    /// A JSON integer: a number bridges to `Int` only when it is exactly one.
    private static func integer(_ v: Any) -> Int64? { (v as? Int).map(Int64.init) }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data())
    }

    public static func decode(_ bytes: [UInt8]) throws -> SafetensorsHeader {
        try JSONDecoder().decode(SafetensorsHeader.self, from: Data(bytes))
    }
}

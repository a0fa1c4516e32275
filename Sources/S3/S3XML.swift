import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import ModelStore

/// A parsed XML element: enough of a DOM for S3's answers. Text is kept exactly (keys may start
/// or end with spaces); entities such as `&amp;` are already decoded.
struct S3XMLNode: Sendable, Equatable {
    var name: String
    var text: String = ""
    var children: [S3XMLNode] = []

    func child(_ name: String) -> S3XMLNode? { children.first { $0.name == name } }
    func all(_ name: String) -> [S3XMLNode] { children.filter { $0.name == name } }
    /// The text of the first child called `name`.
    subscript(_ name: String) -> String? { child(name)?.text }
}

enum S3XML {
    /// Parses a document into its root element; nil when it is not well-formed XML.
    static func parse(_ bytes: [UInt8]) -> S3XMLNode? {
        guard !bytes.isEmpty else { return nil }
        let parser = XMLParser(data: Data(bytes))
        let builder = TreeBuilder()
        parser.delegate = builder
        parser.shouldProcessNamespaces = false
        parser.shouldResolveExternalEntities = false
        guard parser.parse() else { return nil }
        return builder.root
    }

    /// `text` with `& < > " '` escaped, for request bodies.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for ch in text.unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    /// An ETag without its quotes (S3 sends `"…"`, in XML as `&quot;…&quot;`; some servers send
    /// it bare). An MD5-style ETag (`<hex>` or `<hex>-<parts>`) is lower-cased, so it compares
    /// with a locally computed digest whatever case the server chose.
    static func unquote(_ etag: String) -> String {
        var s = Substring(etag.trimmingCharacters(in: .whitespaces))
        if s.hasPrefix("W/") { s = s.dropFirst(2) }
        if s.count >= 2, s.hasPrefix("\""), s.hasSuffix("\"") { s = s.dropFirst().dropLast() }
        let text = String(s)
        return isDigestETag(text) ? text.lowercased() : text
    }

    /// `<32 hex digits>` or `<32 hex digits>-<digits>`.
    static func isDigestETag(_ etag: String) -> Bool {
        let utf8 = Array(etag.utf8)
        guard utf8.count >= 32, utf8[..<32].allSatisfy(isHex) else { return false }
        if utf8.count == 32 { return true }
        return utf8.count > 33 && utf8[32] == UInt8(ascii: "-") && utf8[33...].allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    private static func isHex(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)
    }

    /// The ETag S3 gives the object a multipart upload of `parts` makes: the MD5 of the parts'
    /// binary MD5s, then `-<part count>`. Nil when a part's ETag is not an MD5 (SSE-KMS, SSE-C):
    /// then only the `-<count>` suffix can be checked.
    static func multipartETag(_ parts: [UploadedPart]) -> String? {
        var joined: [UInt8] = []
        joined.reserveCapacity(parts.count * 16)
        for part in parts {
            let hex = Array(unquote(part.etag).utf8)
            guard hex.count == 32, hex.allSatisfy(isHex) else { return nil }
            for i in stride(from: 0, to: 32, by: 2) {
                guard let byte = UInt8(String(decoding: hex[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
                joined.append(byte)
            }
        }
        return Digest.hex(Digest.md5(joined)) + "-\(parts.count)"
    }

    // MARK: - S3 answers

    struct ErrorBody: Sendable, Equatable {
        var code: String
        var message: String
    }

    /// The `<Error><Code/><Message/></Error>` of a failed request, if the body is one (with or
    /// without a namespace, as every element name is matched by its local part).
    static func parseError(_ bytes: [UInt8]) -> ErrorBody? {
        guard let root = parse(bytes), root.name == "Error" else { return nil }
        return ErrorBody(code: root["Code"] ?? "", message: root["Message"] ?? "")
    }

    struct ObjectPage: Sendable, Equatable {
        var objects: [ObjectInfo]
        var isTruncated: Bool
        var nextContinuationToken: String?
    }

    static func parseListObjectsV2(_ bytes: [UInt8]) throws(ObjectStoreError) -> ObjectPage {
        let root = try document(bytes, expecting: "ListBucketResult")
        let urlEncoded = root["EncodingType"] == "url"
        var objects: [ObjectInfo] = []
        for item in root.all("Contents") {
            guard var key = item["Key"] else { throw .other("ListObjectsV2 answer has an entry without Key") }
            if urlEncoded { key = S3URIEncoding.decode(key, plusIsSpace: true) }
            objects.append(ObjectInfo(key: key, size: Int64(item["Size"] ?? "") ?? 0, etag: unquote(item["ETag"] ?? ""),
                                      lastModified: item["LastModified"].flatMap(S3Dates.parseISO8601)))
        }
        return ObjectPage(objects: objects, isTruncated: bool(root["IsTruncated"]),
                          nextContinuationToken: root["NextContinuationToken"].flatMap { $0.isEmpty ? nil : $0 })
    }

    struct PartPage: Sendable, Equatable {
        var parts: [UploadedPart]
        var isTruncated: Bool
        var nextPartNumberMarker: Int?
    }

    static func parseListParts(_ bytes: [UInt8]) throws(ObjectStoreError) -> PartPage {
        let root = try document(bytes, expecting: "ListPartsResult")
        var parts: [UploadedPart] = []
        for item in root.all("Part") {
            guard let number = Int(item["PartNumber"] ?? "") else { throw .other("ListParts answer has a part without PartNumber") }
            parts.append(UploadedPart(number: number, etag: unquote(item["ETag"] ?? ""), size: Int64(item["Size"] ?? "") ?? 0))
        }
        return PartPage(parts: parts, isTruncated: bool(root["IsTruncated"]),
                        nextPartNumberMarker: root["NextPartNumberMarker"].flatMap { Int($0) })
    }

    struct UploadPage: Sendable, Equatable {
        var uploads: [PendingUpload]
        var isTruncated: Bool
        var nextKeyMarker: String?
        var nextUploadIDMarker: String?
    }

    static func parseListMultipartUploads(_ bytes: [UInt8]) throws(ObjectStoreError) -> UploadPage {
        let root = try document(bytes, expecting: "ListMultipartUploadsResult")
        let urlEncoded = root["EncodingType"] == "url"
        var uploads: [PendingUpload] = []
        for item in root.all("Upload") {
            guard var key = item["Key"], let id = item["UploadId"] else {
                throw .other("ListMultipartUploads answer has an upload without Key or UploadId")
            }
            if urlEncoded { key = S3URIEncoding.decode(key, plusIsSpace: true) }
            uploads.append(PendingUpload(key: key, uploadID: id, initiated: item["Initiated"].flatMap(S3Dates.parseISO8601)))
        }
        var nextKey = root["NextKeyMarker"].flatMap { $0.isEmpty ? nil : $0 }
        if urlEncoded { nextKey = nextKey.map { S3URIEncoding.decode($0, plusIsSpace: true) } }
        return UploadPage(uploads: uploads, isTruncated: bool(root["IsTruncated"]), nextKeyMarker: nextKey,
                          nextUploadIDMarker: root["NextUploadIdMarker"].flatMap { $0.isEmpty ? nil : $0 })
    }

    static func parseInitiateMultipartUpload(_ bytes: [UInt8]) throws(ObjectStoreError) -> String {
        let root = try document(bytes, expecting: "InitiateMultipartUploadResult")
        guard let id = root["UploadId"], !id.isEmpty else { throw .other("CreateMultipartUpload answer has no UploadId") }
        return id
    }

    static func parseCompleteMultipartUpload(_ bytes: [UInt8]) throws(ObjectStoreError) -> String {
        let root = try document(bytes, expecting: "CompleteMultipartUploadResult")
        let etag = unquote(root["ETag"] ?? "")
        guard !etag.isEmpty else { throw .other("CompleteMultipartUpload answer (\(root.name)) has no ETag") }
        return etag
    }

    static func completeMultipartUploadBody(_ parts: [UploadedPart]) -> [UInt8] {
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for part in parts {
            xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(escape("\"" + unquote(part.etag) + "\""))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        return Array(xml.utf8)
    }

    /// The root of an answer, as leniently as boto3 and the AWS SDKs take it: any root element
    /// name will do (AWS documents `…Result`; moto 5.2 sends `ListPartsResponse`, and
    /// `CompleteMultipartUploadResponse` in 5.2.0–5.2.1), with or without a namespace, except
    /// `<Error>`, which is the error it names even in a 200 answer. `name` is for messages only.
    private static func document(_ bytes: [UInt8], expecting name: String) throws(ObjectStoreError) -> S3XMLNode {
        guard let root = parse(bytes) else { throw .other("malformed XML in the answer to \(name)") }
        if root.name == "Error" {
            let code = root["Code"] ?? ""
            if code == "NoSuchUpload" || code == "NoSuchKey" { throw .notFound(key: root["Key"] ?? "") }
            throw .server(status: 200, code: code.isEmpty ? "Error" : code, message: root["Message"] ?? "")
        }
        return root
    }

    private static func bool(_ s: String?) -> Bool { s?.trimmingCharacters(in: .whitespaces).lowercased() == "true" }
}

/// Builds the element tree from XMLParser's events.
private final class TreeBuilder: NSObject, XMLParserDelegate {
    var stack: [S3XMLNode] = []
    var root: S3XMLNode?

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        // A prefixed name (`s3:Key`) is matched by its local part.
        let local = elementName.split(separator: ":").last.map(String.init) ?? elementName
        stack.append(S3XMLNode(name: local))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if !stack.isEmpty { stack[stack.count - 1].text += string }
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        if !stack.isEmpty { stack[stack.count - 1].text += String(decoding: CDATABlock, as: UTF8.self) }
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        guard let done = stack.popLast() else { return }
        if stack.isEmpty { root = done } else { stack[stack.count - 1].children.append(done) }
    }
}

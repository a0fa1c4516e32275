import Foundation
import ModelStore

/// AWS Signature Version 4 for S3, header authentication. Pure: no clock, no network; the
/// caller passes the date, which makes it testable against AWS's published examples.
public struct SigV4Signer: Sendable {
    /// The payload hash to send instead of a real one over TLS, when the caller allows it.
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// The sha256 of nothing, for requests without a body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public var credentials: S3Credentials
    public var region: String
    public var service: String

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The request to sign. `path` and `query` are raw (not percent-encoded); the signer encodes
    /// them with ``S3URIEncoding`` exactly as the URL sent must be encoded. `headers` must hold
    /// `Host` and every other header to be signed; the signer adds `x-amz-date`,
    /// `x-amz-content-sha256` and, with a session token, `x-amz-security-token`.
    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var query: [(String, String)]
        public var headers: [(String, String)]
        /// Hex sha256 of the body, or ``SigV4Signer/unsignedPayload``.
        public var payloadHash: String

        public init(method: String, path: String, query: [(String, String)] = [], headers: [(String, String)], payloadHash: String) {
            self.method = method; self.path = path; self.query = query; self.headers = headers; self.payloadHash = payloadHash
        }
    }

    /// The parts of a signature, exposed for tests and debugging (none holds the secret).
    public struct Signed: Sendable {
        /// Every header to send: the request's own plus the x-amz ones and `Authorization`.
        public var headers: [(String, String)]
        public var canonicalRequest: String
        public var stringToSign: String
        public var signedHeaders: String
        public var signature: String
        public var authorization: String
    }

    /// Signs `request` at `date`.
    public func sign(_ request: Request, date: Date) -> Signed {
        let amzDate = AMZDate.timestamp(date)
        let day = String(amzDate.prefix(8))

        var headers = request.headers.filter { name, _ in
            let lower = name.lowercased()
            return lower != "authorization" && lower != "x-amz-date" && lower != "x-amz-content-sha256" && lower != "x-amz-security-token"
        }
        headers.append(("x-amz-content-sha256", request.payloadHash))
        headers.append(("x-amz-date", amzDate))
        if let token = credentials.sessionToken, !token.isEmpty {
            headers.append(("x-amz-security-token", token))
        }

        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(headers)
        let canonicalRequest = [
            request.method.uppercased(),
            S3URIEncoding.encodePath(request.path),
            S3URIEncoding.canonicalQuery(request.query),
            canonicalHeaders,
            signedHeaders,
            request.payloadHash,
        ].joined(separator: "\n")

        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256",
            amzDate,
            scope,
            Digest.hex(Digest.sha256(canonicalRequest)),
        ].joined(separator: "\n")

        let signature = Digest.hex(Digest.hmacSHA256(key: signingKey(day: day), stringToSign))
        let authorization = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        headers.append(("Authorization", authorization))
        return Signed(headers: headers, canonicalRequest: canonicalRequest, stringToSign: stringToSign,
                      signedHeaders: signedHeaders, signature: signature, authorization: authorization)
    }

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request").
    func signingKey(day: String) -> [UInt8] {
        let kDate = Digest.hmacSHA256(key: Array(("AWS4" + credentials.secretAccessKey).utf8), day)
        let kRegion = Digest.hmacSHA256(key: kDate, region)
        let kService = Digest.hmacSHA256(key: kRegion, service)
        return Digest.hmacSHA256(key: kService, "aws4_request")
    }

    /// Lower-cased names, trimmed values with inner runs of spaces collapsed, sorted by name;
    /// repeated names joined with commas. Returns the block (each line ending in "\n") and the
    /// `;`-joined signed-header list.
    static func canonicalHeaders(_ headers: [(String, String)]) -> (String, String) {
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            merged[name.lowercased(), default: []].append(normalizeHeaderValue(value))
        }
        let names = merged.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        var block = ""
        for name in names {
            block += name + ":" + merged[name]!.joined(separator: ",") + "\n"
        }
        return (block, names.joined(separator: ";"))
    }

    static func normalizeHeaderValue(_ value: String) -> String {
        var out = ""
        var lastWasSpace = false
        for ch in value.trimmingCharacters(in: .whitespaces) {
            if ch == " " || ch == "\t" {
                if !lastWasSpace { out.append(" ") }
                lastWasSpace = true
            } else {
                out.append(ch)
                lastWasSpace = false
            }
        }
        return out
    }
}

/// SigV4's percent-encoding, used for both the canonical request and the URL actually sent, so
/// the two can never disagree.
public enum S3URIEncoding {
    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    @inline(__always)
    static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// Encodes every byte but the unreserved ones (and `/` when `keepSlash`) as `%XX`, uppercase hex.
    public static func encode(_ s: String, keepSlash: Bool = false) -> String {
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count)
        for b in s.utf8 {
            if isUnreserved(b) || (keepSlash && b == UInt8(ascii: "/")) {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(b >> 4)])
                out.append(hexDigits[Int(b & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The canonical URI of a raw path: each segment encoded, the `/` between them kept, never
    /// normalised (S3 keys may hold `//`, `.` and `..`). An empty path is `/`.
    public static func encodePath(_ path: String) -> String {
        if path.isEmpty { return "/" }
        let encoded = encode(path, keepSlash: true)
        return encoded.hasPrefix("/") ? encoded : "/" + encoded
    }

    /// `k=v` pairs, each side encoded, sorted by encoded key then encoded value, joined by `&`.
    public static func canonicalQuery(_ query: [(String, String)]) -> String {
        query.map { (encode($0.0), encode($0.1)) }
            .sorted { a, b in
                if a.0 != b.0 { return Array(a.0.utf8).lexicographicallyPrecedes(Array(b.0.utf8)) }
                return Array(a.1.utf8).lexicographicallyPrecedes(Array(b.1.utf8))
            }
            .map { $0.0 + "=" + $0.1 }
            .joined(separator: "&")
    }

    /// Decodes `%XX` sequences (and, when `plusIsSpace`, `+` as a space). Invalid escapes are kept.
    public static func decode(_ s: String, plusIsSpace: Bool = false) -> String {
        var out = [UInt8]()
        let bytes = Array(s.utf8)
        out.reserveCapacity(bytes.count)
        var i = 0
        func hexValue(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "%"), i + 2 < bytes.count,
               let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
            } else if plusIsSpace && b == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
                i += 1
            } else {
                out.append(b)
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The `x-amz-date` format, `yyyyMMdd'T'HHmmss'Z'` in UTC.
public enum AMZDate {
    public static func timestamp(_ date: Date) -> String {
        let t = Int64(date.timeIntervalSince1970.rounded(.down))
        let (y, m, d, hh, mm, ss) = CivilTime.components(t)
        return pad(y, 4) + pad(m, 2) + pad(d, 2) + "T" + pad(hh, 2) + pad(mm, 2) + pad(ss, 2) + "Z"
    }

    static func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}

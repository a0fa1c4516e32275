import Foundation
import ModelStore
import Testing
@testable import S3

/// AWS's worked examples from the S3 API reference, "Signature Calculations for the Authorization
/// Header: Transferring Payload in a Single Chunk (AWS Signature Version 4)".
@Suite struct SigV4SignerTests {
    static let credentials = S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE",
                                           secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    static let date = Date(timeIntervalSince1970: 1_369_353_600)  // 20130524T000000Z
    static let host = "examplebucket.s3.amazonaws.com"
    let signer = SigV4Signer(credentials: credentials, region: "us-east-1")

    @Test func amzDate() {
        #expect(AMZDate.timestamp(Self.date) == "20130524T000000Z")
        #expect(AMZDate.timestamp(Date(timeIntervalSince1970: 0)) == "19700101T000000Z")
        #expect(AMZDate.timestamp(Date(timeIntervalSince1970: 951_782_400 + 86_399.9)) == "20000229T235959Z")
    }

    @Test func getObjectWithRange() {
        let signed = signer.sign(.init(method: "GET", path: "/test.txt",
                                       headers: [("Host", Self.host), ("Range", "bytes=0-9")],
                                       payloadHash: SigV4Signer.emptyPayloadHash), date: Self.date)
        #expect(signed.canonicalRequest == """
            GET
            /test.txt

            host:examplebucket.s3.amazonaws.com
            range:bytes=0-9
            x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            x-amz-date:20130524T000000Z

            host;range;x-amz-content-sha256;x-amz-date
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        #expect(signed.stringToSign == """
            AWS4-HMAC-SHA256
            20130524T000000Z
            20130524/us-east-1/s3/aws4_request
            7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972
            """)
        #expect(signed.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(signed.authorization == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func putObject() {
        let body = Array("Welcome to Amazon S3.".utf8)
        let hash = Digest.hex(Digest.sha256(body))
        #expect(hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let signed = signer.sign(.init(method: "PUT", path: "/test$file.text",
                                       headers: [("Host", Self.host), ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                                                 ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
                                       payloadHash: hash), date: Self.date)
        #expect(signed.canonicalRequest == """
            PUT
            /test%24file.text

            date:Fri, 24 May 2013 00:00:00 GMT
            host:examplebucket.s3.amazonaws.com
            x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072
            x-amz-date:20130524T000000Z
            x-amz-storage-class:REDUCED_REDUNDANCY

            date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class
            44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072
            """)
        #expect(signed.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test func getBucketLifecycle() {
        let signed = signer.sign(.init(method: "GET", path: "/", query: [("lifecycle", "")],
                                       headers: [("Host", Self.host)], payloadHash: SigV4Signer.emptyPayloadHash), date: Self.date)
        #expect(signed.canonicalRequest.hasPrefix("GET\n/\nlifecycle=\nhost:examplebucket.s3.amazonaws.com\n"))
        #expect(signed.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    @Test func listObjects() {
        // Given out of order: the canonical query sorts.
        let signed = signer.sign(.init(method: "GET", path: "/", query: [("prefix", "J"), ("max-keys", "2")],
                                       headers: [("Host", Self.host)], payloadHash: SigV4Signer.emptyPayloadHash), date: Self.date)
        #expect(signed.canonicalRequest.hasPrefix("GET\n/\nmax-keys=2&prefix=J\n"))
        #expect(signed.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test func signedHeadersAreSentAndSessionTokenIsSigned() {
        var creds = Self.credentials
        creds.sessionToken = "TOKEN/with+chars="
        let signer = SigV4Signer(credentials: creds, region: "eu-west-1")
        let signed = signer.sign(.init(method: "get", path: "/b/k", headers: [("Host", "h:8080"), ("X-Amz-Date", "stale")],
                                       payloadHash: SigV4Signer.unsignedPayload), date: Self.date)
        let names = signed.headers.map { $0.0.lowercased() }
        #expect(names.filter { $0 == "x-amz-date" }.count == 1)
        #expect(names.contains("x-amz-security-token"))
        #expect(names.last == "authorization")
        #expect(signed.signedHeaders == "host;x-amz-content-sha256;x-amz-date;x-amz-security-token")
        #expect(signed.canonicalRequest.hasPrefix("GET\n"))
        #expect(signed.canonicalRequest.hasSuffix("\nUNSIGNED-PAYLOAD"))
        #expect(signed.canonicalRequest.contains("x-amz-security-token:TOKEN/with+chars=\n"))
        #expect(signed.authorization.contains("/20130524/eu-west-1/s3/aws4_request"))
        #expect(!signed.authorization.contains(creds.secretAccessKey))
    }

    @Test func headerValuesAreTrimmedAndCollapsed() {
        let (block, names) = SigV4Signer.canonicalHeaders([("My-Header", "  a   b  c "), ("my-header", "d"), ("Host", "h")])
        #expect(block == "host:h\nmy-header:a b c,d\n")
        #expect(names == "host;my-header")
    }
}

@Suite struct URIEncodingTests {
    @Test func unreservedAreKept() {
        #expect(S3URIEncoding.encode("AZaz09-_.~") == "AZaz09-_.~")
    }

    @Test func specialCharactersInPaths() {
        #expect(S3URIEncoding.encodePath("/models/a+b%c?d#e&f g.zip") == "/models/a%2Bb%25c%3Fd%23e%26f%20g.zip")
        #expect(S3URIEncoding.encodePath("/models/千问-7B/v1.zip") == "/models/%E5%8D%83%E9%97%AE-7B/v1.zip")
        #expect(S3URIEncoding.encodePath("/b/a=b:c,d;e@f$g!h*i'j(k)l") == "/b/a%3Db%3Ac%2Cd%3Be%40f%24g%21h%2Ai%27j%28k%29l")
        // Never normalised, never double-encoded.
        #expect(S3URIEncoding.encodePath("/b/x//./../y") == "/b/x//./../y")
        #expect(S3URIEncoding.encodePath("/b/%2F") == "/b/%252F")
        #expect(S3URIEncoding.encodePath("") == "/")
        #expect(S3URIEncoding.encodePath("k") == "/k")
    }

    @Test func queryEncodesSlashAndSorts() {
        #expect(S3URIEncoding.canonicalQuery([("prefix", "a/b c+"), ("list-type", "2"), ("uploads", "")])
            == "list-type=2&prefix=a%2Fb%20c%2B&uploads=")
        #expect(S3URIEncoding.canonicalQuery([("k", "b"), ("k", "a")]) == "k=a&k=b")
        // Sorted by the encoded key: "%" (0x25) sorts before letters.
        #expect(S3URIEncoding.canonicalQuery([("a", "1"), ("ä", "2")]) == "%C3%A4=2&a=1")
    }

    @Test func canonicalURIOfUTF8KeyInSignature() {
        let signer = SigV4Signer(credentials: SigV4SignerTests.credentials, region: "us-east-1")
        let signed = signer.sign(.init(method: "GET", path: "/models/千问-7B/v1.zip",
                                       headers: [("Host", "127.0.0.1:8080")], payloadHash: SigV4Signer.emptyPayloadHash),
                                 date: SigV4SignerTests.date)
        #expect(signed.canonicalRequest.split(separator: "\n", omittingEmptySubsequences: false)[1]
            == "/models/%E5%8D%83%E9%97%AE-7B/v1.zip")
    }

    @Test func decode() {
        #expect(S3URIEncoding.decode("a%2Bb%20c+d") == "a+b c+d")
        #expect(S3URIEncoding.decode("a%2Bb%20c+d", plusIsSpace: true) == "a+b c d")
        #expect(S3URIEncoding.decode("%E5%8D%83") == "千")
        #expect(S3URIEncoding.decode("100%") == "100%")
        #expect(S3URIEncoding.decode("%zz%4") == "%zz%4")
    }
}

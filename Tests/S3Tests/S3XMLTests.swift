import Foundation
import ModelStore
import Testing
@testable import S3

@Suite struct S3XMLTests {
    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func listObjectsV2() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Name>models</Name><Prefix>a&amp;b/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
              <IsTruncated>true</IsTruncated>
              <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
              <Contents>
                <Key>a&amp;b/ x &lt;y&gt; &#x5343;.zip</Key>
                <LastModified>2009-10-12T17:50:30.000Z</LastModified>
                <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
                <Size>434234</Size><StorageClass>STANDARD</StorageClass>
              </Contents>
              <Contents>
                <Key>a&amp;b/2</Key><LastModified>2024-02-29T23:59:59Z</LastModified>
                <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag><Size>0</Size>
              </Contents>
            </ListBucketResult>
            """
        let page = try S3XML.parseListObjectsV2(Self.bytes(xml))
        #expect(page.isTruncated)
        #expect(page.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        #expect(page.objects.count == 2)
        #expect(page.objects[0].key == "a&b/ x <y> 千.zip")
        #expect(page.objects[0].etag == "fba9dede5f27731c9771645a39863328")
        #expect(page.objects[0].size == 434234)
        #expect(page.objects[0].lastModified == Date(timeIntervalSince1970: 1_255_369_830))
        #expect(page.objects[1].etag == "3858f62230ac3c915f300c664312c11f-9")
        #expect(page.objects[1].lastModified == Date(timeIntervalSince1970: 1_709_251_199))
    }

    @Test func listObjectsV2URLEncodedAndEmpty() throws {
        let encoded = try S3XML.parseListObjectsV2(Self.bytes("""
            <ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>
            <Contents><Key>a%2Bb+c%26d</Key><Size>1</Size><ETag>"e"</ETag></Contents></ListBucketResult>
            """))
        #expect(encoded.objects.map(\.key) == ["a+b c&d"])
        #expect(!encoded.isTruncated)
        let empty = try S3XML.parseListObjectsV2(Self.bytes("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"))
        #expect(empty.objects.isEmpty)
        #expect(empty.nextContinuationToken == nil)
        // Keys that are only spaces keep them.
        let spaces = try S3XML.parseListObjectsV2(Self.bytes("<ListBucketResult><Contents><Key>  </Key></Contents></ListBucketResult>"))
        #expect(spaces.objects.map(\.key) == ["  "])
    }

    @Test func malformedOrUnexpected() {
        #expect(throws: ObjectStoreError.self) { try S3XML.parseListObjectsV2(Self.bytes("<ListBucketResult><Contents>")) }
        #expect(throws: ObjectStoreError.server(status: 200, code: "X", message: "")) {
            try S3XML.parseListObjectsV2(Self.bytes("<Error><Code>X</Code></Error>"))
        }
        #expect(throws: ObjectStoreError.self) { try S3XML.parseListObjectsV2([]) }
        #expect(S3XML.parse(Self.bytes("not xml")) == nil)
    }

    @Test func listParts() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Bucket>models</Bucket><Key>m/v&amp;1.zip</Key><UploadId>XXBsb2FkIElEIGZvciBlbHZpbmcncyBVcGxvYWQ</UploadId>
              <PartNumberMarker>1</PartNumberMarker><NextPartNumberMarker>3</NextPartNumberMarker>
              <MaxParts>2</MaxParts><IsTruncated>true</IsTruncated>
              <Part><PartNumber>3</PartNumber><LastModified>2010-11-10T20:48:33.000Z</LastModified>
                <ETag>"aaaa18db4cc2f85cedef654fccc4a4x8"</ETag><Size>10485760</Size></Part>
              <Part><PartNumber>2</PartNumber><LastModified>2010-11-10T20:48:34.000Z</LastModified>
                <ETag>&quot;7778aef83f66abc1fa1e8477f296d394&quot;</ETag><Size>5242881</Size></Part>
            </ListPartsResult>
            """
        let page = try S3XML.parseListParts(Self.bytes(xml))
        #expect(page.isTruncated)
        #expect(page.nextPartNumberMarker == 3)
        #expect(page.parts == [
            UploadedPart(number: 3, etag: "aaaa18db4cc2f85cedef654fccc4a4x8", size: 10_485_760),
            UploadedPart(number: 2, etag: "7778aef83f66abc1fa1e8477f296d394", size: 5_242_881),
        ])
    }

    @Test func listMultipartUploads() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Bucket>models</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
              <NextKeyMarker>my&amp;movie.m2ts</NextKeyMarker>
              <NextUploadIdMarker>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</NextUploadIdMarker>
              <MaxUploads>3</MaxUploads><IsTruncated>true</IsTruncated>
              <Upload><Key>my-divisor</Key><UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>
                <Initiator><ID>arn:aws:iam::111122223333:user/x</ID></Initiator>
                <StorageClass>STANDARD</StorageClass><Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>
              <Upload><Key>my&amp;movie.m2ts</Key><UploadId>VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
                <Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>
            </ListMultipartUploadsResult>
            """
        let page = try S3XML.parseListMultipartUploads(Self.bytes(xml))
        #expect(page.isTruncated)
        #expect(page.nextKeyMarker == "my&movie.m2ts")
        #expect(page.nextUploadIDMarker == "YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ")
        #expect(page.uploads.map(\.key) == ["my-divisor", "my&movie.m2ts"])
        #expect(page.uploads[0].uploadID == "XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw")
        #expect(page.uploads[0].initiated == Date(timeIntervalSince1970: 1_289_422_113))
    }

    @Test func errorBodies() {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match &amp; so on</Message>
            <StringToSign>AWS4-HMAC-SHA256...</StringToSign><RequestId>tx1</RequestId></Error>
            """
        #expect(S3XML.parseError(Self.bytes(xml)) == .init(code: "SignatureDoesNotMatch",
                                                          message: "The request signature we calculated does not match & so on"))
        #expect(S3XML.parseError(Self.bytes("<ListBucketResult/>")) == nil)
        #expect(S3XML.parseError([]) == nil)
        #expect(S3XML.parseError(Self.bytes("<html>502</html")) == nil)
    }

    @Test func multipartBodies() throws {
        #expect(try S3XML.parseInitiateMultipartUpload(Self.bytes("""
            <InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket>
            <Key>k</Key><UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>
            """)) == "VXBsb2FkIElE")
        #expect(try S3XML.parseCompleteMultipartUpload(Self.bytes("""
            <CompleteMultipartUploadResult><Location>http://x</Location><Bucket>b</Bucket><Key>k</Key>
            <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag></CompleteMultipartUploadResult>
            """)) == "3858f62230ac3c915f300c664312c11f-9")
        let body = String(decoding: S3XML.completeMultipartUploadBody([UploadedPart(number: 1, etag: "abc", size: 5),
                                                                        UploadedPart(number: 2, etag: "\"d&e\"", size: 1)]),
                          as: UTF8.self)
        #expect(body.contains("<Part><PartNumber>1</PartNumber><ETag>&quot;abc&quot;</ETag></Part><Part><PartNumber>2</PartNumber><ETag>&quot;d&amp;e&quot;</ETag></Part>"))
        // Round trip through the parser.
        let parsed = try #require(S3XML.parse(Array(body.utf8)))
        #expect(parsed.all("Part").map { $0["ETag"] } == ["\"abc\"", "\"d&e\""])
    }

    /// moto 5.2 names answers `…Response`; other servers leave out the namespace or prefix every
    /// element. Any root but `<Error>` is taken, as boto3 and the AWS SDKs take it.
    @Test func anyRootElementButErrorIsAnAnswer() throws {
        let parts = try S3XML.parseListParts(Self.bytes("""
            <?xml version="1.0" encoding="UTF-8"?>
            <ListPartsResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>models</Bucket><Key>k</Key>
            <UploadId>u</UploadId><IsTruncated>false</IsTruncated>
            <Part><PartNumber>1</PartNumber><ETag>4F08EEF4096726BFF1125E1B1B734644</ETag><Size>5242880</Size></Part></ListPartsResponse>
            """))
        #expect(parts.parts == [UploadedPart(number: 1, etag: "4f08eef4096726bff1125e1b1b734644", size: 5_242_880)])
        #expect(!parts.isTruncated)
        #expect(try S3XML.parseCompleteMultipartUpload(Self.bytes("""
            <CompleteMultipartUploadResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key>
            <ETag>&quot;298c9a5c8205ea8eeef29652993678aa-2&quot;</ETag></CompleteMultipartUploadResponse>
            """)) == "298c9a5c8205ea8eeef29652993678aa-2")
        #expect(try S3XML.parseInitiateMultipartUpload(Self.bytes("""
            <s3:InitiateMultipartUploadResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"><s3:UploadId>id-1</s3:UploadId></s3:InitiateMultipartUploadResult>
            """)) == "id-1")
        let listing = try S3XML.parseListObjectsV2(Self.bytes("<ListObjectsV2Output><Contents><Key>a</Key><ETag>abc</ETag></Contents></ListObjectsV2Output>"))
        #expect(listing.objects.map(\.etag) == ["abc"])
        let uploads = try S3XML.parseListMultipartUploads(Self.bytes("<ListMultipartUploadsResponse><Upload><Key>a</Key><UploadId>u</UploadId></Upload></ListMultipartUploadsResponse>"))
        #expect(uploads.uploads.map(\.uploadID) == ["u"])
    }

    @Test func errorRootIsTheErrorItNames() {
        let error = Self.bytes("<Error xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>")
        #expect(throws: ObjectStoreError.server(status: 200, code: "InternalError", message: "We encountered an internal error.")) {
            try S3XML.parseCompleteMultipartUpload(error)
        }
        #expect(throws: ObjectStoreError.server(status: 200, code: "InternalError", message: "We encountered an internal error.")) {
            try S3XML.parseListParts(error)
        }
        #expect(throws: ObjectStoreError.notFound(key: "")) {
            try S3XML.parseListParts(Self.bytes("<Error><Code>NoSuchUpload</Code></Error>"))
        }
        #expect(S3XML.parseError(error)?.code == "InternalError", "a namespaced <Error> is still one")
        // A completion answer without an ETag says nothing about the object.
        #expect(throws: ObjectStoreError.self) {
            try S3XML.parseCompleteMultipartUpload(Self.bytes("<CompleteMultipartUploadResult><Key>k</Key></CompleteMultipartUploadResult>"))
        }
    }

    /// The numbers are moto's for a 5 MiB part of "x" and a 10-byte part of "y", which AWS gives too.
    @Test func multipartETagIsTheMD5OfThePartMD5s() {
        let parts = [UploadedPart(number: 1, etag: "\"4f08eef4096726bff1125e1b1b734644\"", size: 5_242_880),
                     UploadedPart(number: 2, etag: "0BBC18CDEA1C4AAA17777D441214774A", size: 10)]
        #expect(S3XML.multipartETag(parts) == "298c9a5c8205ea8eeef29652993678aa-2")
        #expect(S3XML.multipartETag([UploadedPart(number: 1, etag: "kms-opaque-etag", size: 1)]) == nil)
    }

    @Test func etagUnquoting() {
        #expect(S3XML.unquote("4F08EEF4096726BFF1125E1B1B734644") == "4f08eef4096726bff1125e1b1b734644")
        #expect(S3XML.unquote("\"298C9A5C8205EA8EEEF29652993678AA-2\"") == "298c9a5c8205ea8eeef29652993678aa-2")
        #expect(S3XML.unquote("Opaque-Tag") == "Opaque-Tag", "an ETag that is not a digest keeps its case")

        #expect(S3XML.unquote("\"abc\"") == "abc")
        #expect(S3XML.unquote("abc") == "abc")
        #expect(S3XML.unquote("W/\"abc-2\"") == "abc-2")
        #expect(S3XML.unquote("\"") == "\"")
    }

    @Test func httpDates() {
        #expect(S3Dates.parseHTTP("Wed, 12 Oct 2009 17:50:00 GMT") == Date(timeIntervalSince1970: 1_255_369_800))
        #expect(S3Dates.parseHTTP("garbage") == nil)
        #expect(S3Dates.parseISO8601("2009-10-12T17:50:30.5Z") == Date(timeIntervalSince1970: 1_255_369_830.5))
        #expect(S3Dates.parseISO8601("2009-13-12T17:50:30Z") == nil)
    }
}

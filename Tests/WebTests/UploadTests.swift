import Foundation
import Testing
@testable import Web
import ModelStore

// MARK: Uploads and jobs over HTTP (API+Uploads.swift, API+Jobs.swift)

@Test func noContentRangeIsTheWholeFile() throws {
    #expect(try API.UploadRange.parse(nil, length: 10) == API.UploadRange(start: 0, total: 10, given: false))
    #expect(try API.UploadRange.parse(nil, length: 0) == API.UploadRange(start: 0, total: 0, given: false))
}

@Test func aContentRangeIsTheRestOfTheFile() throws {
    #expect(try API.UploadRange.parse("bytes 16777216-20999999/21000000", length: 4_222_784)
            == API.UploadRange(start: 16_777_216, total: 21_000_000, given: true))
    #expect(try API.UploadRange.parse("bytes 0-9/10", length: 10) == API.UploadRange(start: 0, total: 10, given: true))
}

@Test(arguments: [
    ("bytes=0-9/10", 10, "Content-Range is 'bytes FIRST-LAST/SIZE'"),
    ("bytes 0-9/*", 10, "Content-Range is"),
    ("bytes 5-2/10", 10, "Content-Range is"),
    ("bytes -1-9/10", 11, "Content-Range is"),
    ("bytes 0-8/10", 9, "stops before the end"),
    ("bytes 0-9/10", 9, "is 10 bytes but Content-Length says 9"),
])
func aBadContentRangeIsRefusedSayingWhy(_ header: String, _ length: Int64, _ says: String) {
    do {
        _ = try API.UploadRange.parse(header, length: length)
        Issue.record("\(header) was taken")
    } catch {
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains(says), "\(error.message)")
    }
}

@Test func theVersionNamesItsFormatOrTheQueryDoes() throws {
    #expect(try API.uploadFileName("v2.safetensors", format: nil) == "v2.safetensors")
    #expect(try API.uploadFileName("v2", format: "tar.gz") == "v2.tar.gz")
    #expect(throws: StoreError.self) { try API.uploadFileName("v2", format: nil) }
    #expect(throws: StoreError.self) { try API.uploadFileName("v2", format: "") }
}

@Test func aJobsParamsGoBesideItsFields() throws {
    let flat = try API.flatRequest(Array(#"{"model": "m", "version": "v1", "dataset": "d", "params": {"epochs": 3, "lr": "0.1"}}"#.utf8))
    let fields = try #require(try JSONSerialization.jsonObject(with: Data(flat)) as? [String: Any])
    #expect(Set(fields.keys) == ["model", "version", "dataset", "epochs", "lr"])
    // Without params the body is left as it is, for JobRequest to judge.
    let plain = Array(#"{"model": "m", "epochs": 3}"#.utf8)
    #expect(try API.flatRequest(plain) == plain)
    #expect(throws: StoreError.self) { try API.flatRequest(Array(#"{"epochs": 1, "params": {"epochs": 3}}"#.utf8)) }
    #expect(throws: StoreError.self) { try API.flatRequest(Array(#"{"params": [1]}"#.utf8)) }
}

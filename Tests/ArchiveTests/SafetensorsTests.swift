import Foundation
import Testing
@testable import Archive

/// A safetensors file: the 8-byte length, the JSON, the data.
func safetensors(_ json: String, data: Int) -> [UInt8] {
    let header = Array(json.utf8)
    var n = UInt64(header.count)
    return withUnsafeBytes(of: &n) { Array($0) } + header + [UInt8](repeating: 7, count: data)
}

@Suite struct SafetensorsTests {
    @Test func aHeaderGivesTensorsInFileOrderWithTheirAbsoluteRanges() throws {
        let json = #"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2,3],"data_offsets":[16,28]},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        let file = safetensors(json, data: 28)
        let h = try SafetensorsHeader.read(Bytes(bytes: file))
        let start = Int64(8 + json.utf8.count)
        #expect(h.dataStart == start)
        #expect(h.tensors.map(\.name) == ["a", "b"])
        #expect(h.tensors.map { $0.begin..<$0.end } == [start..<(start + 16), (start + 16)..<(start + 28)])
        #expect(h.parameters == 10 && h.dtypes == ["F16", "F32"] && h.metadata == ["format": "pt"])
        #expect(try SafetensorsHeader.decode(h.encoded()) == h)
    }

    @Test(arguments: [
        (#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, 8, "past the end"),
        (#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}"#, 16, "for its shape"),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, 16, "overlap"),
        (#"{"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}}"#, 16, "unknown dtype"),
        (#"{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#, 16, "non-negative"),
        (#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}"#, 16, "too large"),
        (#"{"a":{"dtype":"F32"}}"#, 16, "needs dtype"),
        (#"[1,2]"#, 0, "not a JSON object"),
        (#"{"a":"#, 0, "not JSON"),
    ])
    func aBadHeaderIsRefusedWithAReason(_ json: String, _ data: Int, _ reason: String) {
        do {
            _ = try SafetensorsHeader.read(Bytes(bytes: safetensors(json, data: data)))
            Issue.record("accepted \(json)")
        } catch {
            #expect(error.reason.contains(reason), "\(error.reason)")
        }
    }

    @Test func aLengthThatCannotFitIsRefused() {
        var n = UInt64.max
        let file = withUnsafeBytes(of: &n) { Array($0) } + Array("{}".utf8)
        #expect(throws: ArchiveError.self) { try SafetensorsHeader.read(Bytes(bytes: file)) }
        #expect(throws: ArchiveError.self) { try SafetensorsHeader.read(Bytes(bytes: [1, 2, 3])) }
    }
}

@Suite struct HostileSafetensorsTests {
    @Test func negativeOffsetsAreRefused() {
        let json = Array(#"{"t":{"dtype":"U8","shape":[8],"data_offsets":[-8,0]}}"#.utf8)
        #expect(throws: ArchiveError.self) { try SafetensorsHeader.parse(json, fileSize: 8 + Int64(json.count) + 8) }
    }

    @Test func aHeaderTooLongForAnXattrIsNotKept() throws {
        let names = (0..<3000).map { #""t\#($0)":{"dtype":"U8","shape":[1],"data_offsets":[\#($0),\#($0 + 1)]}"# }
        let json = Array(("{" + names.joined(separator: ",") + "}").utf8)
        let header = try SafetensorsHeader.parse(json, fileSize: 8 + Int64(json.count) + 3000)
        #expect(header.tensors.count == 3000 && header.json.isEmpty && header.jsonOmitted == true)
    }
}

import Foundation
import Glibc
import ModelStore
import ReadPath

/// One open of a file: what reads, writes and closes of it do. A provider makes it at `open` or
/// `create`; ``FileSystem`` keeps it under a handle until the last close. What a kind of file
/// does not do is refused as the defaults below say.
protocol OpenFile: AnyObject, Sendable {
    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply
    func write(offset: Int64, bytes: UnsafeRawBufferPointer, _ ctx: RequestContext) throws(StoreError) -> Int
    /// One `close()` (of possibly several descriptors sharing the open file).
    func flush(_ ctx: RequestContext) throws(StoreError)
    /// The last close.
    func release() throws(StoreError)
    /// A local file holding all of this file's bytes that reads may go to directly (passthrough).
    var wholeFile: Int32? { get }
}

extension OpenFile {
    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply { throw StoreError(.badDescriptor, "not open for reading") }
    func write(offset: Int64, bytes: UnsafeRawBufferPointer, _ ctx: RequestContext) throws(StoreError) -> Int {
        throw StoreError(.badDescriptor, "not open for writing")
    }
    func flush(_ ctx: RequestContext) throws(StoreError) {}
    func release() throws(StoreError) {}
    var wholeFile: Int32? { nil }
}

/// Bytes made at open (`.stats`, `.next`, a job's status and spec).
final class ContentFile: OpenFile {
    let content: [UInt8]
    init(_ content: [UInt8]) { self.content = content }

    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply { .bytes(ContentFile.slice(content, offset, size)) }

    static func slice(_ bytes: [UInt8], _ offset: Int64, _ size: Int) -> [UInt8] {
        let lower = Int(min(max(offset, 0), Int64(bytes.count)))
        return Array(bytes[lower..<min(lower + size, bytes.count)])
    }
}

/// A ready version or dataset: its object reader does the work.
final class ReaderFile: OpenFile {
    let reader: any ObjectReader
    init(_ reader: any ObjectReader) { self.reader = reader }
    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply { try reader.read(offset: offset, size: size) }
    var wholeFile: Int32? { reader.wholeFile }
}

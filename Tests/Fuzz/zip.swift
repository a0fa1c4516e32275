// libFuzzer: the zip index (end records, zip64, central directory) and members' local headers.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzZip(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let source = input(data, size)
    guard let index = try? ZipReader.index(source) else { return 0 }
    checkIndex(index, source)
    for m in index.members where !m.isDirectory {
        if let start = try? ZipReader.dataOffset(of: m, in: source) {
            precondition(start >= 0 && start + m.storedSize <= source.size, "member data outside the archive")
            precondition(start + m.storedSize <= m.dataLimit ?? source.size, "member data over the next header")
            // The CRC-32 of a stored member's bytes, read in two halves back to front, is the whole one's.
            if m.method == .stored, let bytes = try? source.read(at: start, count: Int(m.size)), bytes.count == Int(m.size) {
                var coverage = CRCCoverage()
                coverage.add(Array(bytes[(bytes.count / 2)...]), at: Int64(bytes.count / 2))
                coverage.add(Array(bytes[..<(bytes.count / 2)]), at: 0)
                precondition(coverage.whole(size: m.size) == CRCCoverage.crc(bytes[...]), "CRC-32 of ranges")
            }
        }
    }
    return 0
}

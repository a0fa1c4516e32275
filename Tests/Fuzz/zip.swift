// libFuzzer: the zip index (end records, zip64, central directory) and members' local headers.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzZip(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let source = input(data, size)
    guard let index = try? ZipReader.index(source) else { return 0 }
    checkIndex(index, source)
    for m in index.members where !m.isDirectory {
        if let start = try? ZipReader.dataOffset(of: m, in: source) {
            precondition(start >= 0 && start + m.storedSize <= source.size, "member data outside the archive")
        }
    }
    return 0
}

import Foundation

/// The index of a zip archive from its end: the end of central directory record (zip64's when
/// present), then the central directory in one read. Members' local headers are read only when a
/// member is opened (``ZipReader/dataOffset(of:in:)``), so listing 10,000 members costs two reads.
public enum ZipReader {
    static let eocdSignature: UInt32 = 0x0605_4b50
    static let zip64LocatorSignature: UInt32 = 0x0706_4b50
    static let zip64EOCDSignature: UInt32 = 0x0606_4b50
    static let centralSignature: UInt32 = 0x0201_4b50
    static let localSignature: UInt32 = 0x0403_4b50
    /// A central directory larger than this is refused rather than read into memory.
    public static let maxCentralDirectory: Int64 = 256 << 20
    /// Member indexes have 24 bits in an inode.
    public static let maxMembers = (1 << 24) - 2

    public static func index(_ source: some ByteSource) throws(ArchiveError) -> ArchiveIndex {
        let size = source.size
        guard size >= 22 else { throw ArchiveError("not a zip archive: \(size) bytes is shorter than its end record") }
        let tailLength = Int(min(size, 22 + 65535))
        let tailStart = size - Int64(tailLength)
        let tail = try read(source, tailStart, tailLength)
        guard tail.count == tailLength else { throw ArchiveError("the archive could not be read whole") }
        // The end record is the last signature whose comment length reaches the end exactly; a
        // comment that happens to hold the signature loses to it.
        var eocd: Int?
        var i = tail.count - 22
        while i >= 0 {
            let f = Fields(tail, at: i)
            if f.u32(0) == eocdSignature && i + 22 + Int(f.u16(20)) == tail.count { eocd = i; break }
            i -= 1
        }
        if eocd == nil {
            i = tail.count - 22
            while i >= 0 { if Fields(tail, at: i).u32(0) == eocdSignature { eocd = i; break }; i -= 1 }
        }
        guard let eocd else { throw ArchiveError("not a zip archive: no end of central directory record") }
        let end = Fields(tail, at: eocd)
        var entries = UInt64(end.u16(10))
        var cdSize = UInt64(end.u32(12))
        var cdOffset = UInt64(end.u32(16))
        let eocdPosition = tailStart + Int64(eocd)
        var directoryEnd = eocdPosition
        if eocd >= 20, Fields(tail, at: eocd - 20).u32(0) == zip64LocatorSignature {
            let at = Fields(tail, at: eocd - 20).u64(8)
            guard at <= UInt64(eocdPosition - 20) else { throw ArchiveError("the zip64 end record points outside the archive") }
            let record = try read(source, Int64(at), 56)
            let z = Fields(record)
            guard z.u32(0) == zip64EOCDSignature else { throw ArchiveError("no zip64 end record where its locator points") }
            entries = z.u64(32)
            cdSize = z.u64(40)
            cdOffset = z.u64(48)
            directoryEnd = Int64(at)
        }
        guard cdOffset <= UInt64(directoryEnd), cdSize <= UInt64(directoryEnd) - cdOffset else {
            throw ArchiveError("the central directory (\(cdOffset)+\(cdSize)) lies outside the archive")
        }
        guard Int64(cdSize) <= maxCentralDirectory else { throw ArchiveError("a central directory of \(cdSize) bytes is too large") }
        guard entries <= UInt64(maxMembers) else { throw ArchiveError("\(entries) members are more than a view can hold") }
        let directory = try read(source, Int64(cdOffset), Int(cdSize))
        guard directory.count == Int(cdSize) else { throw ArchiveError("the central directory is truncated") }

        var members: [ArchiveMember] = []
        var problems: [String] = []
        var at = 0
        for n in 0..<Int(entries) {
            let f = Fields(directory, at: at)
            guard at + 46 <= directory.count, f.u32(0) == centralSignature else {
                problems.append("central directory entry \(n) is damaged; the \(Int(entries) - n) from there are left out")
                break
            }
            let nameLength = Int(f.u16(28)), extraLength = Int(f.u16(30)), commentLength = Int(f.u16(32))
            let next = at + 46 + nameLength + extraLength + commentLength
            guard next <= directory.count else {
                problems.append("central directory entry \(n) runs past the directory's end; left out with those after it")
                break
            }
            defer { at = next }
            let rawName = f.slice(46, nameLength)
            let utf8 = f.u16(8) & 0x0800 != 0
            let name = String(validating: rawName, as: UTF8.self) ?? (utf8 ? String(decoding: rawName, as: UTF8.self)
                                                                           : String(rawName.map { Character(Unicode.Scalar($0)) }))
            switch member(f, name: name, extra: f.slice(46 + nameLength, extraLength), directoryStart: Int64(cdOffset), size: size) {
            case .success(let m): members.append(m)
            case .failure(let e): problems.append(e.reason)
            }
        }
        return ArchiveIndex(kind: .zip, members: members, problems: problems)
    }

    private static func member(_ f: Fields, name rawName: String, extra: ArraySlice<UInt8>, directoryStart: Int64,
                               size: Int64) -> Result<ArchiveMember, ArchiveError> {
        let path: String
        switch MemberPaths.normalize(rawName) {
        case .success(let p): path = p
        case .failure(let e): return .failure(e)
        }
        let flags = f.u16(8), method = f.u16(10)
        var compressed = UInt64(f.u32(20)), uncompressed = UInt64(f.u32(24)), offset = UInt64(f.u32(42))
        var modified = dosTime(date: f.u16(14), time: f.u16(12))
        // Extra fields: zip64 sizes and offset, the Unix modification time.
        let e = Array(extra)
        var i = 0
        while i + 4 <= e.count {
            let x = Fields(e, at: i)
            let id = x.u16(0), length = Int(x.u16(2))
            guard i + 4 + length <= e.count else { break }
            if id == 0x0001 {
                var p = 4
                if uncompressed == 0xFFFF_FFFF, p + 8 <= 4 + length { uncompressed = x.u64(p); p += 8 }
                if compressed == 0xFFFF_FFFF, p + 8 <= 4 + length { compressed = x.u64(p); p += 8 }
                if offset == 0xFFFF_FFFF, p + 8 <= 4 + length { offset = x.u64(p); p += 8 }
            } else if id == 0x5455, length >= 5, x.slice(4, 1).first.map({ $0 & 1 != 0 }) == true {
                modified = Double(x.u32(5))
            }
            i += 4 + length
        }
        let madeBy = f.u16(4) >> 8
        let unixMode = madeBy == 3 ? (f.u32(38) >> 16) : 0
        let fileType = unixMode & 0o170000
        let isDirectory = rawName.hasSuffix("/") || fileType == 0o040000 || (madeBy == 0 && f.u32(38) & 0x10 != 0)
        if fileType == 0o120000 { return .failure(ArchiveError("\(path): a symbolic link, left out")) }
        if fileType != 0 && fileType != 0o100000 && fileType != 0o040000 {
            return .failure(ArchiveError("\(path): not a regular file or directory, left out"))
        }
        let mode = unixMode & 0o777 != 0 ? unixMode & 0o777 : (isDirectory ? 0o755 : 0o644)
        if isDirectory {
            return .success(ArchiveMember(path: path, isDirectory: true, size: 0, mode: mode, modified: modified, dataOffset: nil, storedSize: 0))
        }
        if flags & 0x0001 != 0 { return .failure(ArchiveError("\(path): encrypted, left out")) }
        let kind: MemberMethod
        switch method {
        case 0: kind = .stored
        case 8: kind = .deflated
        default: return .failure(ArchiveError("\(path): compression method \(method) is not supported, left out"))
        }
        guard offset < UInt64(directoryStart), compressed <= UInt64(directoryStart) - offset else {
            return .failure(ArchiveError("\(path): its data (\(offset)+\(compressed)) lies outside the archive, left out"))
        }
        guard uncompressed <= UInt64(Int64.max / 2) else { return .failure(ArchiveError("\(path): an impossible size, left out")) }
        if kind == .stored && compressed != uncompressed {
            return .failure(ArchiveError("\(path): stored with two different sizes (\(compressed), \(uncompressed)), left out"))
        }
        return .success(ArchiveMember(path: path, isDirectory: false, size: Int64(uncompressed), mode: mode, modified: modified,
                                      method: kind, dataOffset: nil, headerOffset: Int64(offset), storedSize: Int64(compressed),
                                      crc32: f.u32(16)))
    }

    /// Where a member's data begins: after its local header, which only that header measures.
    /// Refused when the header is not there or the data would run past `limit` (the central directory).
    public static func dataOffset(of m: ArchiveMember, in source: some ByteSource) throws(ArchiveError) -> Int64 {
        if let known = m.dataOffset { return known }
        guard let header = m.headerOffset else { throw ArchiveError("\(m.path): no local header recorded") }
        let bytes = try read(source, header, 30)
        let f = Fields(bytes)
        guard bytes.count == 30, f.u32(0) == localSignature else { throw ArchiveError("\(m.path): no local header at \(header)") }
        let start = header + 30 + Int64(f.u16(26)) + Int64(f.u16(28))
        guard start + m.storedSize <= source.size else { throw ArchiveError("\(m.path): its data runs past the archive's end") }
        return start
    }

    static func read(_ source: some ByteSource, _ offset: Int64, _ count: Int) throws(ArchiveError) -> [UInt8] {
        do { return try source.read(at: offset, count: count) } catch {
            throw ArchiveError("reading the archive failed: \(error)", unreadable: true)
        }
    }

    /// MS-DOS date and time (local time by the format; read as UTC, as zip tools on servers do).
    static func dosTime(date: UInt16, time: UInt16) -> Double {
        let day = Int(date & 31), month = Int((date >> 5) & 15), year = 1980 + Int(date >> 9)
        let seconds = Int(time & 31) * 2, minutes = Int((time >> 5) & 63), hours = Int(time >> 11)
        guard (1...12).contains(month), (1...31).contains(day) else { return 0 }
        return Double(daysFromCivil(year, month, day) * 86400 + hours * 3600 + minutes * 60 + seconds)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }
}

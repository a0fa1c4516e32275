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
        // The end record is where unzip and Python find it: the last 22 bytes when they are one
        // with no comment, else the last signature in the tail. Any other choice (the record
        // whose comment reaches the end, say) can read another archive hidden in a comment than
        // the one those tools extract.
        var eocd: Int?
        var i = tail.count - 22
        while i >= 0 { if Fields(tail, at: i).u32(0) == eocdSignature { eocd = i; break }; i -= 1 }
        guard let eocd else { throw ArchiveError("not a zip archive: no end of central directory record") }
        let end = Fields(tail, at: eocd)
        var entries = UInt64(end.u16(10))
        var cdSize = UInt64(end.u32(12))
        var cdOffset = UInt64(end.u32(16))
        let eocdPosition = tailStart + Int64(eocd)
        var directoryEnd = eocdPosition
        if eocd >= 20, Fields(tail, at: eocd - 20).u32(0) == zip64LocatorSignature {
            // The zip64 end record is read where it must be, just before its locator (as Python
            // does), so a stub in front (whose length the locator's offset leaves out) is found too.
            var at = eocdPosition - 20 - 56
            let found = at >= 0 ? Fields(try read(source, at, 4)).u32(0) == zip64EOCDSignature : false
            if !found {
                let recorded = Fields(tail, at: eocd - 20).u64(8)
                guard recorded <= UInt64(eocdPosition - 20) else { throw ArchiveError("the zip64 end record points outside the archive") }
                at = Int64(recorded)
            }
            let record = try read(source, at, 56)
            let z = Fields(record)
            guard z.u32(0) == zip64EOCDSignature else { throw ArchiveError("no zip64 end record where its locator points") }
            entries = z.u64(32)
            cdSize = z.u64(40)
            cdOffset = z.u64(48)
            directoryEnd = at
        }
        // The central directory ends where the end record begins; what lies before the offsets it
        // records is a stub in front (a self-extracting zip): every offset is moved by its length,
        // as unzip and Python do.
        guard cdSize <= UInt64(directoryEnd), cdOffset <= UInt64(directoryEnd) - cdSize else {
            throw ArchiveError("the central directory (\(cdOffset)+\(cdSize)) lies outside the archive")
        }
        let stub = directoryEnd - Int64(cdSize) - Int64(cdOffset)
        let directoryStart = Int64(cdOffset) + stub
        guard Int64(cdSize) <= maxCentralDirectory else { throw ArchiveError("a central directory of \(cdSize) bytes is too large") }
        guard entries <= UInt64(maxMembers) else { throw ArchiveError("\(entries) members are more than a view can hold") }
        let directory = try read(source, directoryStart, Int(cdSize))
        guard directory.count == Int(cdSize) else { throw ArchiveError("the central directory is truncated") }

        var members: [ArchiveMember] = []
        var problems: [String] = []
        /// Every entry's local header, left out or not: a member's data ends before the next one.
        var headers: [Int64] = [directoryStart]
        var at = 0
        // Entries are read to the directory's end, as Python does (and unzip goes on past the
        // count): an end record counting fewer (a count that wrapped at 65,536, or a hostile one)
        // must not hide a later entry of a name, whose copy those tools extract.
        var n = 0
        while n < Int(entries) || (at < directory.count && n < maxMembers) {
            defer { n += 1 }
            let f = Fields(directory, at: at)
            guard at + 46 <= directory.count, f.u32(0) == centralSignature else {
                if n < Int(entries) || at + 4 > directory.count || Fields(directory, at: at).u32(0) == centralSignature {
                    problems.append("central directory entry \(n) is damaged; the entries from there are left out")
                } else {
                    problems.append("\(directory.count - at) bytes after the central directory's entries, ignored")
                }
                break
            }
            let nameLength = Int(f.u16(28)), extraLength = Int(f.u16(30)), commentLength = Int(f.u16(32))
            let next = at + 46 + nameLength + extraLength + commentLength
            guard next <= directory.count else {
                problems.append("central directory entry \(n) runs past the directory's end; left out with those after it")
                break
            }
            defer { at = next }
            let recorded: Int64? = f.u32(42) != 0xFFFF_FFFF ? Int64(f.u32(42)) + stub : nil
            let name: String
            switch MemberPaths.decode(f.slice(46, nameLength)) {
            case .success(let n): name = n
            case .failure(let e):
                problems.append(e.reason)
                if let recorded { headers.append(recorded) }
                continue
            }
            let extra = f.slice(46 + nameLength, extraLength)
            switch member(f, name: name, extra: extra, directoryStart: directoryStart, stub: stub) {
            case .success(let m):
                members.append(m)
                if let h = m.headerOffset ?? recorded { headers.append(h) }
            case .failure(let e):
                problems.append(e.reason)
                if let recorded { headers.append(recorded) }
            }
        }
        headers.sort()
        for i in members.indices {
            guard let h = members[i].headerOffset else { continue }
            // The first header after this one's (binary search: 10,000 members stay cheap).
            var lo = 0, hi = headers.count
            while lo < hi { let mid = (lo + hi) / 2; if headers[mid] <= h { lo = mid + 1 } else { hi = mid } }
            members[i].dataLimit = lo < headers.count ? headers[lo] : directoryStart
        }
        return ArchiveIndex(kind: .zip, members: members, problems: problems)
    }

    private static func member(_ f: Fields, name rawName: String, extra: ArraySlice<UInt8>, directoryStart: Int64,
                               stub: Int64) -> Result<ArchiveMember, ArchiveError> {
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
        offset &+= UInt64(stub)
        guard offset < UInt64(directoryStart), compressed <= UInt64(directoryStart) - offset else {
            return .failure(ArchiveError("\(path): its data (\(offset)+\(compressed)) lies outside the archive, left out"))
        }
        guard uncompressed <= UInt64(Int64.max / 2) else { return .failure(ArchiveError("\(path): an impossible size, left out")) }
        if kind == .stored && compressed != uncompressed {
            return .failure(ArchiveError("\(path): stored with two different sizes (\(compressed), \(uncompressed)), left out"))
        }
        var m = ArchiveMember(path: path, isDirectory: false, size: Int64(uncompressed), mode: mode, modified: modified,
                              method: kind, dataOffset: nil, headerOffset: Int64(offset), storedSize: Int64(compressed), crc32: f.u32(16))
        if rawName != path { m.rawName = rawName }
        return .success(m)
    }

    /// Where a member's data begins: after its local header, which only that header measures.
    /// The local header must agree with the central directory — its name, method, CRC-32 and
    /// sizes (those a data descriptor gives instead may be zero) — and the data must end before
    /// the next member's header: anything else is damage, never a member served from other bytes.
    public static func dataOffset(of m: ArchiveMember, in source: some ByteSource) throws(ArchiveError) -> Int64 {
        if let known = m.dataOffset { return known }
        guard let header = m.headerOffset else { throw ArchiveError("\(m.path): no local header recorded") }
        let bytes = try read(source, header, 30)
        let f = Fields(bytes)
        guard bytes.count == 30, f.u32(0) == localSignature else { throw ArchiveError("\(m.path): no local header at \(header)") }
        let nameLength = Int(f.u16(26)), extraLength = Int(f.u16(28))
        let variable = try read(source, header + 30, nameLength + extraLength)
        guard variable.count == nameLength + extraLength else {
            throw ArchiveError("\(m.path): its local header is cut short")
        }
        let expected = Array(m.headerName.utf8)
        guard variable.prefix(nameLength).elementsEqual(expected) else {
            let local = MemberPaths.printable(String(decoding: variable.prefix(nameLength), as: UTF8.self))
            throw ArchiveError("\(m.path): its local header names \(local), not the central directory's name")
        }
        let method = f.u16(8)
        guard method == (m.method == .deflated ? 8 : 0), f.u16(6) & 0x0001 == 0 else {
            throw ArchiveError("\(m.path): its local header's method or flags differ from the central directory's")
        }
        var compressed = UInt64(f.u32(18)), uncompressed = UInt64(f.u32(22))
        if compressed == 0xFFFF_FFFF || uncompressed == 0xFFFF_FFFF {
            let extra = Array(variable[nameLength...])
            var i = 0
            while i + 4 <= extra.count {
                let x = Fields(extra, at: i)
                let length = Int(x.u16(2))
                if x.u16(0) == 0x0001, length >= 16 { uncompressed = x.u64(4); compressed = x.u64(12); break }
                i += 4 + length
            }
        }
        let crc = f.u32(14)
        // With a data descriptor (flag 3) the local header may leave the CRC and sizes zero.
        let deferred = f.u16(6) & 0x0008 != 0
        func agrees(_ local: UInt64, _ central: UInt64) -> Bool { local == central || (deferred && local == 0) }
        guard agrees(UInt64(crc), UInt64(m.crc32 ?? crc)) else {
            throw ArchiveError("\(m.path): its local header's CRC-32 \(hex(crc)) differs from the central directory's "
                               + hex(m.crc32 ?? 0))
        }
        guard agrees(compressed, UInt64(m.storedSize)), agrees(uncompressed, UInt64(m.size)) else {
            throw ArchiveError("\(m.path): its local header's sizes (\(compressed), \(uncompressed)) differ from the central "
                               + "directory's (\(m.storedSize), \(m.size))")
        }
        let start = header + 30 + Int64(nameLength) + Int64(extraLength)
        guard start + m.storedSize <= source.size else { throw ArchiveError("\(m.path): its data runs past the archive's end") }
        if let limit = m.dataLimit, start + m.storedSize > limit {
            throw ArchiveError("\(m.path): its data (\(start)+\(m.storedSize)) runs into the next member's header at \(limit)")
        }
        return start
    }

    public static func hex(_ v: UInt32) -> String { String(v, radix: 16) }

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

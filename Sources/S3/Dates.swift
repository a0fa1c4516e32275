import Foundation

/// Calendar arithmetic in UTC without formatters (which are neither Sendable nor cheap).
enum CivilTime {
    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (m + 9) % 12
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    /// (year, month, day, hour, minute, second) of seconds since the epoch, UTC.
    static func components(_ t: Int64) -> (Int, Int, Int, Int, Int, Int) {
        let secs = Int(t)
        var days = secs / 86400
        var rem = secs % 86400
        if rem < 0 { rem += 86400; days -= 1 }
        let (y, m, d) = civilFromDays(days)
        return (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
    }

    static func date(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Double) -> Date? {
        guard (1...12).contains(month), (1...31).contains(day), (0...23).contains(hour),
              (0...59).contains(minute), second >= 0, second < 61 else { return nil }
        let days = daysFromCivil(year, month, day)
        let t = Double(days) * 86400 + Double(hour * 3600 + minute * 60) + second
        return Date(timeIntervalSince1970: t)
    }
}

/// The two date formats S3 speaks.
enum S3Dates {
    /// ISO 8601 as in listings: `2009-10-12T17:50:30.000Z` (fraction and `Z` optional).
    static func parseISO8601(_ s: String) -> Date? {
        let b = Array(s.utf8)
        guard b.count >= 19 else { return nil }
        func num(_ from: Int, _ len: Int) -> Int? {
            var n = 0
            for i in from..<(from + len) {
                let c = b[i]
                guard c >= 48 && c <= 57 else { return nil }
                n = n * 10 + Int(c - 48)
            }
            return n
        }
        guard let y = num(0, 4), b[4] == UInt8(ascii: "-"), let mo = num(5, 2), b[7] == UInt8(ascii: "-"),
              let d = num(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: " "),
              let h = num(11, 2), b[13] == UInt8(ascii: ":"), let mi = num(14, 2), b[16] == UInt8(ascii: ":"),
              let sec = num(17, 2) else { return nil }
        var seconds = Double(sec)
        var i = 19
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                seconds += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
        }
        return CivilTime.date(year: y, month: mo, day: d, hour: h, minute: mi, second: seconds)
    }

    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    /// RFC 7231 IMF-fixdate as in `Last-Modified`: `Wed, 12 Oct 2009 17:50:00 GMT`.
    static func parseHTTP(_ s: String) -> Date? {
        let parts = s.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count >= 5 else { return nil }
        let rest = parts[0].hasSuffix(",") ? Array(parts.dropFirst()) : Array(parts)
        guard rest.count >= 4, let day = Int(rest[0]),
              let month = months.firstIndex(of: rest[1].lowercased()).map({ $0 + 1 }),
              let year = Int(rest[2]) else { return nil }
        let hms = rest[3].split(separator: ":")
        guard hms.count == 3, let h = Int(hms[0]), let m = Int(hms[1]), let sec = Int(hms[2]) else { return nil }
        return CivilTime.date(year: year, month: month, day: day, hour: h, minute: m, second: Double(sec))
    }
}

import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Markup built as plain strings: every value from the store or the request goes through
/// ``HTML/escape(_:)`` (text and attribute values alike), the one place a name becomes markup.
enum HTML {
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// A path segment (a model or job name) for a link.
    static func segment(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#"))) ?? name
    }

    static func query(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+#"))) ?? value
    }

    /// Bytes as a person reads them (1000-based, as `ls -h --si` and the CLI's progress).
    static func bytes(_ n: Int64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var value = Double(n), unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func date(_ d: Date?) -> String {
        guard let d else { return "" }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm"
        return f.string(from: d)
    }

    static func number(_ x: Double) -> String {
        x.rounded() == x && abs(x) < 1e15 ? String(Int64(x)) : String(format: "%.4g", x)
    }

    static func status(_ s: String) -> String { "<span class=\"status \(escape(s))\">\(escape(s))</span>" }

    /// A whole page: the navigation, who is signed in, and the CSRF token its script sends with writes.
    static func page(_ title: String, _ viewer: Viewer, _ body: String) -> Response {
        let who = viewer.user.map {
            """
            <form method="post" action="/logout" class="who"><span>\(escape($0.name))</span>\
            <input type="hidden" name="csrf" value="\(escape(viewer.csrf ?? ""))"><button>Sign out</button></form>
            """
        } ?? "<a class=\"who\" href=\"/login\">Sign in</a>"
        let text = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="csrf-token" content="\(escape(viewer.csrf ?? ""))">
            <title>\(escape(title)) · modelfs</title><link rel="stylesheet" href="/static/app.css"><script src="/static/app.js" defer></script></head>
            <body><header><a class="brand" href="/">modelfs</a><nav><a href="/">Models</a><a href="/import">Import model</a>\
            <a href="/jobs">Jobs</a><a href="/services">Services</a></nav>\(who)</header>
            <main>\(body)</main></body></html>
            """
        return respond(.ok, text)
    }

    /// What a page may load and run: only this server's script and style (a name or note that
    /// slipped past escaping still runs nothing), in no other site's frame (no clickjacking).
    static let policy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        + "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    static func respond(_ status: HTTPResponse.Status, _ text: String, type: String = "text/html; charset=utf-8",
                        headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.contentType: type, .cacheControl: "no-store", .contentSecurityPolicy: HTML.policy,
                                   .xContentTypeOptions: "nosniff", HTTPField.Name("Referrer-Policy")!: "same-origin"]
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Who looks at a page: nobody (a read from loopback) or a user, with the CSRF token of their writes.
struct Viewer: Sendable {
    var user: WebUser?
    var csrf: String?
    static let nobody = Viewer(user: nil, csrf: nil)
}

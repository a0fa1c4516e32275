import Foundation
import HTTPTypes
import Hummingbird

/// Who asks: a bearer token from the tokens file, or (only when the operator trusts a reverse
/// proxy) the user that proxy names in its header. Reads from loopback need nobody; writes, and
/// reads from elsewhere, need a user (401 otherwise). A token is never logged nor echoed.
struct Authentication: Sendable {
    let tokens: Tokens?
    let trustedHeader: HTTPField.Name?

    func user(of request: Request, peerIsLoopback: Bool, writing: Bool) throws(WebError) -> WebUser? {
        let user = try named(request)
        if user == nil && (writing || !peerIsLoopback) {
            let how = [tokens != nil ? "an Authorization: Bearer token" : nil, trustedHeader.map { "the \($0) header of the proxy" }]
                .compactMap { $0 }.joined(separator: " or ")
            throw WebError.unauthorized(writing
                ? "a change needs a user: \(how.isEmpty ? "this server has no tokens file (--tokens) and trusts no proxy header" : how)"
                : "reads from another host than this one need a user: \(how.isEmpty ? "this server knows none" : how)")
        }
        return user
    }

    private func named(_ request: Request) throws(WebError) -> WebUser? {
        if let authorization = request.headers[.authorization] {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw WebError.unauthorized("the Authorization header is not 'Bearer TOKEN'")
            }
            guard let user = tokens?.user(for: String(parts[1]).trimmingCharacters(in: .whitespaces)) else {
                throw WebError.unauthorized("the bearer token is not in this server's tokens file")
            }
            return user
        }
        if let trustedHeader, let name = request.headers[trustedHeader] {
            guard let user = WebUser.resolve(name.trimmingCharacters(in: .whitespaces)) else {
                throw WebError.unauthorized("\(trustedHeader) names no user of this machine")
            }
            return user
        }
        return nil
    }
}

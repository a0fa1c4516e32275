import CCurl

/// Which failures are worth another attempt, and how long to wait before it.
public struct RetryPolicy: Sendable {
    public var base: Duration
    public var cap: Duration
    public var maxAttempts: Int

    public init(base: Duration = .milliseconds(100), cap: Duration = .seconds(2), maxAttempts: Int = 10) {
        self.base = base; self.cap = cap; self.maxAttempts = maxAttempts
    }

    /// Full jitter: a random delay in 0...min(cap, base · 2^(attempt-1)), `attempt` counting from 1.
    public func delay(afterAttempt attempt: Int) -> Duration {
        delay(afterAttempt: attempt, random: Double.random(in: 0...1))
    }

    /// The same with the random fraction given, for tests.
    public func delay(afterAttempt attempt: Int, random: Double) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let ceiling = min(cap, base * (1 << exponent))
        return ceiling * min(max(random, 0), 1)
    }

    /// Server answers worth retrying: 5xx (but 501 Not Implemented), 429, 408, and the S3 codes
    /// that mean "busy" or "timed out, try again" whatever their status (S3's RequestTimeout is a
    /// 400; a 200 CompleteMultipartUpload may carry an InternalError). Other 4xx never are.
    public static func isRetryable(status: Int, code: String) -> Bool {
        switch code {
        case "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "ThrottlingException",
             "TooManyRequests":
            return true
        default:
            break
        }
        if status == 429 || status == 408 { return true }
        if status == 501 { return false }
        return (500...599).contains(status)
    }

    /// Transport failures worth retrying: refused or reset connections, timeouts, truncated
    /// bodies, a server that said nothing. A malformed URL or a failed certificate check is not.
    public static func isRetryable(curlCode code: Int) -> Bool {
        if code == TransportError.truncatedCode { return true }
        let retryable: [CURLcode] = [
            CURLE_COULDNT_RESOLVE_HOST,  // a resolver hiccup; the deadline bounds a real misspelling
            CURLE_COULDNT_CONNECT,       // refused, unreachable
            CURLE_OPERATION_TIMEDOUT,    // a timeout or a stall under the low-speed limit
            CURLE_PARTIAL_FILE,          // the connection closed before Content-Length bytes
            CURLE_GOT_NOTHING,           // closed with no answer
            CURLE_SEND_ERROR,            // reset while sending
            CURLE_RECV_ERROR,            // reset while receiving
            CURLE_SEND_FAIL_REWIND,
            CURLE_SSL_CONNECT_ERROR,     // a TLS handshake cut short
            CURLE_HTTP2,
            CURLE_HTTP2_STREAM,
            CURLE_AGAIN,
        ]
        return retryable.contains { Int($0.rawValue) == code }
    }
}

import Foundation

/// Why an S3 configuration could not be resolved. Messages name variables and files, never a secret.
public struct S3ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where and how to reach the bucket. Build one directly, or with ``resolve(bucket:endpoint:region:profile:environment:)``
/// the way the AWS CLI does.
public struct S3Config: Sendable, CustomStringConvertible {
    public enum Addressing: String, Sendable {
        /// Path-style for custom endpoints, virtual-hosted for AWS (path-style when the bucket has dots).
        case auto
        /// `scheme://host/bucket/key`.
        case path
        /// `scheme://bucket.host/key`.
        case virtualHosted = "virtual"
    }

    public enum PayloadSigning: Sendable {
        /// Always hash the body into the signature.
        case always
        /// Send `UNSIGNED-PAYLOAD` over https (TLS protects the body); still sign over plain http.
        case unsignedOverHTTPS
    }

    public var bucket: String
    public var region: String
    /// A custom endpoint such as `http://127.0.0.1:8080`; nil means AWS.
    public var endpoint: String?
    public var credentials: S3Credentials
    public var addressing: Addressing = .auto
    public var payloadSigning: PayloadSigning = .always
    /// The longest one operation may take, retries included; then it fails with `.unreachable`.
    public var operationTimeout: Duration = .seconds(30)
    public var connectTimeout: Duration = .seconds(3)
    /// A transfer slower than `lowSpeedLimit` bytes/s for `lowSpeedTime` is abandoned (and retried).
    public var lowSpeedLimit: Int = 1024
    public var lowSpeedTime: Duration = .seconds(10)
    /// Full-jitter exponential backoff: a retry waits a random time in 0...min(cap, base·2ⁿ).
    public var retryBase: Duration = .milliseconds(100)
    public var retryCap: Duration = .seconds(2)
    /// At most this many attempts per operation (the time limit may end it sooner).
    public var maxAttempts: Int = 10
    /// Keys per ListObjectsV2 page (max-keys), 1...1000.
    public var listPageSize: Int = 1000
    /// Idle curl handles (each with its connection cache) kept for reuse.
    public var maxIdleConnections: Int = 64

    public init(bucket: String, region: String = "us-east-1", endpoint: String? = nil, credentials: S3Credentials) {
        self.bucket = bucket
        self.region = region
        self.endpoint = endpoint
        self.credentials = credentials
    }

    public var description: String {
        "S3Config(bucket: \(bucket), region: \(region), endpoint: \(endpoint ?? "AWS"), credentials: \(credentials))"
    }

    // MARK: - Resolution the AWS way

    /// Resolves a configuration: explicit arguments override environment variables, which override
    /// the shared files. Credentials come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
    /// (`AWS_SESSION_TOKEN`), else from the profile (`profile`, else `AWS_PROFILE`, else
    /// `default`) in `AWS_SHARED_CREDENTIALS_FILE` (`~/.aws/credentials`) or `AWS_CONFIG_FILE`
    /// (`~/.aws/config`). As with the AWS CLI, an explicit `profile` argument makes the profile's
    /// credentials win over the environment's. Region: `region`, `AWS_REGION`,
    /// `AWS_DEFAULT_REGION`, the profile's `region`, `us-east-1`. Endpoint: `endpoint`,
    /// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, AWS.
    /// `~` in file paths is the environment's `HOME`; without `HOME` no default file is read.
    public static func resolve(bucket: String, endpoint: String? = nil, region: String? = nil, profile: String? = nil,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws(S3ConfigError) -> S3Config {
        func env(_ name: String) -> String? {
            guard let v = environment[name]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
            return v
        }
        try validateBucket(bucket)

        let explicitProfile = profile.flatMap { $0.isEmpty ? nil : $0 }
        let profileName = explicitProfile ?? env("AWS_PROFILE") ?? "default"
        let home = env("HOME")
        func expand(_ path: String) -> String? {
            if path == "~" { return home }
            if path.hasPrefix("~/") { return home.map { $0 + path.dropFirst(1) } }
            return path
        }
        let credentialsPath = env("AWS_SHARED_CREDENTIALS_FILE").flatMap(expand) ?? home.map { $0 + "/.aws/credentials" }
        let configPath = env("AWS_CONFIG_FILE").flatMap(expand) ?? home.map { $0 + "/.aws/config" }

        let credentialsFile = try credentialsPath.flatMap { path throws(S3ConfigError) in try INIFile.load(path) }
        let configFile = try configPath.flatMap { path throws(S3ConfigError) in try INIFile.load(path) }
        let credSection = credentialsFile?.sections[profileName]
        let configSection = configFile?.sections[profileName == "default" ? "default" : "profile " + profileName]
            ?? configFile?.sections["profile " + profileName]

        if explicitProfile != nil, credSection == nil, configSection == nil {
            let files = [credentialsPath, configPath].compactMap { $0 }.joined(separator: " or ")
            throw S3ConfigError("AWS profile '\(profileName)' not found in \(files.isEmpty ? "any file (HOME is not set)" : files)")
        }

        // Credentials.
        var credentials: S3Credentials?
        if explicitProfile == nil, let id = env("AWS_ACCESS_KEY_ID") {
            guard let secret = env("AWS_SECRET_ACCESS_KEY") else {
                throw S3ConfigError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
            }
            credentials = S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: env("AWS_SESSION_TOKEN"), source: "environment")
        } else if explicitProfile == nil, env("AWS_SECRET_ACCESS_KEY") != nil {
            throw S3ConfigError("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")
        }
        if credentials == nil {
            for (section, path) in [(credSection, credentialsPath), (configSection, configPath)] {
                guard let section, let path else { continue }
                let id = section["aws_access_key_id"], secret = section["aws_secret_access_key"]
                if let id, !id.isEmpty {
                    guard let secret, !secret.isEmpty else {
                        throw S3ConfigError("profile '\(profileName)' in \(path) has aws_access_key_id but no aws_secret_access_key")
                    }
                    let token = section["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
                    credentials = S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token,
                                                source: "profile \(profileName) in \(path)")
                    break
                }
            }
        }
        guard let credentials else {
            var places = ["AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"]
            if let credentialsPath { places.append("profile '\(profileName)' in \(credentialsPath)") }
            if let configPath { places.append("profile '\(profileName)' in \(configPath)") }
            throw S3ConfigError("no AWS credentials found; looked for " + places.joined(separator: ", "))
        }

        let region = region.flatMap { $0.isEmpty ? nil : $0 } ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION")
            ?? configSection?["region"].flatMap { $0.isEmpty ? nil : $0 } ?? "us-east-1"
        let rawEndpoint = endpoint.flatMap { $0.isEmpty ? nil : $0 } ?? env("AWS_ENDPOINT_URL_S3") ?? env("AWS_ENDPOINT_URL")
            ?? configSection?["s3.endpoint_url"].flatMap { $0.isEmpty ? nil : $0 }
            ?? configSection?["endpoint_url"].flatMap { $0.isEmpty ? nil : $0 }

        var config = S3Config(bucket: bucket, region: region, endpoint: nil, credentials: credentials)
        if let rawEndpoint {
            let parsed = try S3Endpoint.parse(rawEndpoint)
            config.endpoint = parsed.description
        }
        if let style = configSection?["s3.addressing_style"], let a = Addressing(rawValue: style) {
            config.addressing = a
        }
        return config
    }

    /// S3's bucket naming rules, loosely: 3-63 characters of a-z 0-9 . - (and _ for old buckets).
    static func validateBucket(_ bucket: String) throws(S3ConfigError) {
        let ok = (3...63).contains(bucket.utf8.count) && bucket.utf8.allSatisfy { b in
            (b >= 97 && b <= 122) || (b >= 48 && b <= 57) || b == 46 || b == 45 || b == 95 || (b >= 65 && b <= 90)
        }
        if !ok {
            throw S3ConfigError("'\(bucket)' is not a valid bucket name (3-63 characters of a-z 0-9 . -)")
        }
    }
}

/// A parsed custom endpoint: `scheme://authority[/base]`.
struct S3Endpoint: Sendable, Equatable, CustomStringConvertible {
    var scheme: String
    /// Host and optional port, exactly as the Host header carries it.
    var authority: String
    /// A path prefix without trailing slash, usually empty.
    var basePath: String

    var description: String { scheme + "://" + authority + basePath }

    static func parse(_ raw: String) throws(S3ConfigError) -> S3Endpoint {
        let s = raw.trimmingCharacters(in: .whitespaces)
        guard let sep = s.range(of: "://") else {
            throw S3ConfigError("endpoint '\(s)' must start with http:// or https://")
        }
        let scheme = s[..<sep.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw S3ConfigError("endpoint scheme '\(scheme)' is not supported; use http:// or https://")
        }
        let rest = s[sep.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = String(rest[..<slash])
        if authority.contains("@") {
            throw S3ConfigError("the endpoint must not carry credentials; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        }
        guard !authority.isEmpty, !authority.contains("?"), !authority.contains("#") else {
            throw S3ConfigError("endpoint '\(s)' has no host")
        }
        var base = String(rest[slash...])
        if let q = base.firstIndex(where: { $0 == "?" || $0 == "#" }) { base = String(base[..<q]) }
        while base.hasSuffix("/") { base.removeLast() }
        return S3Endpoint(scheme: scheme, authority: authority.lowercased(), basePath: base)
    }
}

/// The AWS shared-file dialect of INI: `[section]`, `key = value`, whole-line `#`/`;` comments, and nested
/// values (`s3 =` followed by indented `key = value` lines, stored as `s3.key`).
struct INIFile: Sendable {
    var sections: [String: [String: String]] = [:]

    /// Nil when the file does not exist; an error when it exists but cannot be read.
    static func load(_ path: String) throws(S3ConfigError) -> INIFile? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        // FileHandle rather than FileManager.contents, which refuses /dev/null and other devices.
        guard let handle = FileHandle(forReadingAtPath: path), let data = try? handle.readToEnd() ?? Data() else {
            throw S3ConfigError("cannot read \(path)")
        }
        return parse(String(decoding: data, as: UTF8.self))
    }

    static func parse(_ text: String) -> INIFile {
        var file = INIFile()
        var current: String?
        var parentKey: String?
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            let indented = rawLine.first == " " || rawLine.first == "\t"
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard let close = line.firstIndex(of: "]") else { continue }
                let name = line[line.index(after: line.startIndex)..<close]
                    .split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                current = name
                parentKey = nil
                if file.sections[name] == nil { file.sections[name] = [:] }
                continue
            }
            guard let section = current, let eq = line.firstIndex(where: { $0 == "=" || $0 == ":" }) else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            // Like botocore's RawConfigParser: no inline comments, a value may hold '#' or ';'.
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if indented, let parent = parentKey {
                file.sections[section]?[parent + "." + key] = value
            } else {
                file.sections[section]?[key] = value
                parentKey = value.isEmpty ? key : nil
            }
        }
        return file
    }
}

import Foundation
import Testing
@testable import S3

/// Config resolution with injected environments and temporary files; the real HOME is never read.
@Suite struct S3ConfigTests {
    /// A temporary HOME with `.aws/credentials` and `.aws/config`.
    final class FakeHome {
        let path: String

        init(credentials: String? = nil, config: String? = nil) throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("s3cfg-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path + "/.aws", withIntermediateDirectories: true)
            if let credentials { try credentials.write(toFile: path + "/.aws/credentials", atomically: true, encoding: .utf8) }
            if let config { try config.write(toFile: path + "/.aws/config", atomically: true, encoding: .utf8) }
        }

        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    static let credentialsFile = """
        # comment
        [default]
        aws_access_key_id = AKIDDEFAULT
        aws_secret_access_key = secretDefault

        [work]
        aws_access_key_id=AKIDWORK
        aws_secret_access_key=secret#Work;
        aws_session_token = tokenWork
        """

    static let configFile = """
        [default]
        region = eu-central-1

        [profile work]
        region = ap-south-1
        endpoint_url = http://10.0.0.1:9000/
        s3 =
          addressing_style = virtual

        [profile onlyconfig]
        aws_access_key_id = AKIDCONFIG
        aws_secret_access_key = secretConfig
        """

    @Test func environmentCredentialsAndDefaults() throws {
        let config = try S3Config.resolve(bucket: "models", environment: [
            "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "secretEnv",
        ])
        #expect(config.credentials.accessKeyID == "AKIDENV")
        #expect(config.credentials.secretAccessKey == "secretEnv")
        #expect(config.credentials.sessionToken == nil)
        #expect(config.region == "us-east-1")
        #expect(config.endpoint == nil)
        #expect(config.bucket == "models")
    }

    @Test func filesGiveDefaultProfile() throws {
        let home = try FakeHome(credentials: Self.credentialsFile, config: Self.configFile)
        let config = try S3Config.resolve(bucket: "models", environment: ["HOME": home.path])
        #expect(config.credentials.accessKeyID == "AKIDDEFAULT")
        #expect(config.credentials.secretAccessKey == "secretDefault")
        #expect(config.region == "eu-central-1")
        #expect(config.endpoint == nil)
        #expect(config.credentials.source.contains("profile default"))
    }

    @Test func awsProfileSelectsSections() throws {
        let home = try FakeHome(credentials: Self.credentialsFile, config: Self.configFile)
        let config = try S3Config.resolve(bucket: "models", environment: ["HOME": home.path, "AWS_PROFILE": "work"])
        #expect(config.credentials.accessKeyID == "AKIDWORK")
        #expect(config.credentials.secretAccessKey == "secret#Work;")  // no inline comments, as botocore
        #expect(config.credentials.sessionToken == "tokenWork")
        #expect(config.region == "ap-south-1")
        #expect(config.endpoint == "http://10.0.0.1:9000")
        #expect(config.addressing == .virtualHosted)
    }

    @Test func credentialsMayLiveInConfigFile() throws {
        let home = try FakeHome(config: Self.configFile)
        let config = try S3Config.resolve(bucket: "models", environment: ["HOME": home.path, "AWS_PROFILE": "onlyconfig"])
        #expect(config.credentials.accessKeyID == "AKIDCONFIG")
    }

    @Test func environmentOverridesFiles() throws {
        let home = try FakeHome(credentials: Self.credentialsFile, config: Self.configFile)
        let config = try S3Config.resolve(bucket: "models", environment: [
            "HOME": home.path, "AWS_PROFILE": "work",
            "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "secretEnv", "AWS_SESSION_TOKEN": "tokenEnv",
            "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "ignored-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:8080",
        ])
        #expect(config.credentials.accessKeyID == "AKIDENV")
        #expect(config.credentials.sessionToken == "tokenEnv")
        #expect(config.region == "us-west-2")
        #expect(config.endpoint == "http://127.0.0.1:8080")

        let fallback = try S3Config.resolve(bucket: "models", environment: [
            "HOME": home.path, "AWS_DEFAULT_REGION": "sa-east-1",
        ])
        #expect(fallback.region == "sa-east-1")
    }

    @Test func argumentsOverrideEnvironment() throws {
        let home = try FakeHome(credentials: Self.credentialsFile, config: Self.configFile)
        let env = [
            "HOME": home.path, "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "secretEnv",
            "AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL": "http://127.0.0.1:8080", "AWS_PROFILE": "nonexistent",
        ]
        let config = try S3Config.resolve(bucket: "models", endpoint: "https://minio.example:9000", region: "eu-north-1",
                                          environment: env)
        #expect(config.endpoint == "https://minio.example:9000")
        #expect(config.region == "eu-north-1")
        #expect(config.credentials.accessKeyID == "AKIDENV")

        // An explicit profile beats environment credentials, as with `aws --profile`.
        let profiled = try S3Config.resolve(bucket: "models", profile: "work", environment: env)
        #expect(profiled.credentials.accessKeyID == "AKIDWORK")
        #expect(profiled.region == "us-west-2")  // the region variable still beats the profile's
    }

    @Test func explicitFilePathsAreHonoured() throws {
        let home = try FakeHome(credentials: Self.credentialsFile, config: Self.configFile)
        let other = try FakeHome(credentials: "[default]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = s\n",
                                 config: "[default]\nregion = af-south-1\n")
        let config = try S3Config.resolve(bucket: "models", environment: [
            "HOME": home.path,
            "AWS_SHARED_CREDENTIALS_FILE": other.path + "/.aws/credentials",
            "AWS_CONFIG_FILE": other.path + "/.aws/config",
        ])
        #expect(config.credentials.accessKeyID == "AKIDOTHER")
        #expect(config.region == "af-south-1")

        let tilde = try S3Config.resolve(bucket: "models", environment: [
            "HOME": other.path, "AWS_SHARED_CREDENTIALS_FILE": "~/.aws/credentials",
        ])
        #expect(tilde.credentials.accessKeyID == "AKIDOTHER")
    }

    @Test func missingCredentialsIsAClearError() throws {
        let home = try FakeHome(config: Self.configFile)
        do {
            _ = try S3Config.resolve(bucket: "models", environment: ["HOME": home.path])
            Issue.record("expected an error")
        } catch {
            #expect(error.message.contains("no AWS credentials found"))
            #expect(error.message.contains("AWS_ACCESS_KEY_ID"))
            #expect(error.message.contains(home.path + "/.aws/credentials"))
        }
        #expect(throws: S3ConfigError.self) { try S3Config.resolve(bucket: "models", environment: [:]) }
        #expect(throws: S3ConfigError.self) {
            try S3Config.resolve(bucket: "models", environment: ["AWS_ACCESS_KEY_ID": "AKID"])
        }
        do {
            _ = try S3Config.resolve(bucket: "models", profile: "nope", environment: ["HOME": home.path])
            Issue.record("expected an error")
        } catch {
            #expect(error.message.contains("profile 'nope' not found"))
        }
    }

    @Test func badEndpointsAndBuckets() {
        let env = ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "topsecret"]
        #expect(throws: S3ConfigError.self) { try S3Config.resolve(bucket: "models", endpoint: "127.0.0.1:8080", environment: env) }
        #expect(throws: S3ConfigError.self) { try S3Config.resolve(bucket: "models", endpoint: "ftp://host", environment: env) }
        do {
            _ = try S3Config.resolve(bucket: "models", endpoint: "http://user:pw@host", environment: env)
            Issue.record("expected an error")
        } catch {
            #expect(!error.message.contains("pw"))
        }
        #expect(throws: S3ConfigError.self) { try S3Config.resolve(bucket: "a/b", environment: env) }
        #expect(throws: S3ConfigError.self) { try S3Config.resolve(bucket: "x", environment: env) }
    }

    @Test func secretsNeverPrinted() throws {
        let creds = S3Credentials(accessKeyID: "AKIDPUBLIC", secretAccessKey: "SuperSecret123", sessionToken: "SessTok456")
        let config = S3Config(bucket: "models", endpoint: "http://127.0.0.1:8080", credentials: creds)
        var dumped = ""
        dump(creds, to: &dumped)
        dump(config, to: &dumped)
        for text in ["\(creds)", String(describing: creds), String(reflecting: creds), "\(config)", String(reflecting: config), dumped] {
            #expect(!text.contains("SuperSecret123"))
            #expect(!text.contains("SessTok456"))
        }
        #expect("\(creds)".contains("AKIDPUBLIC"))
        let store = try S3ObjectStore(config: config)
        #expect(store.location == "s3://models at http://127.0.0.1:8080")
    }

    @Test func addressing() throws {
        let creds = S3Credentials(accessKeyID: "a", secretAccessKey: "b")
        var config = S3Config(bucket: "models", region: "eu-west-1", credentials: creds)
        #expect(try S3ObjectStore.target(for: config) == .init(scheme: "https", authority: "models.s3.eu-west-1.amazonaws.com", pathPrefix: ""))
        config.bucket = "my.models"
        #expect(try S3ObjectStore.target(for: config) == .init(scheme: "https", authority: "s3.eu-west-1.amazonaws.com", pathPrefix: "/my.models"))
        config.bucket = "models"
        config.addressing = .path
        #expect(try S3ObjectStore.target(for: config).pathPrefix == "/models")
        config = S3Config(bucket: "models", endpoint: "http://127.0.0.1:8080/", credentials: creds)
        let target = try S3ObjectStore.target(for: config)
        #expect(target == .init(scheme: "http", authority: "127.0.0.1:8080", pathPrefix: "/models"))
        #expect(target.path("a/b") == "/models/a/b")
        #expect(target.path(nil) == "/models")
        config.addressing = .virtualHosted
        #expect(try S3ObjectStore.target(for: config).authority == "models.127.0.0.1:8080")
        let store = try S3ObjectStore(config: S3Config(bucket: "models", region: "us-east-2", credentials: creds))
        #expect(store.location == "s3://models at https://models.s3.us-east-2.amazonaws.com")
    }

    @Test func iniParsing() {
        let ini = INIFile.parse("[ profile  x ]\r\nk : v\r\n; c\nnested =\n  a = 1\n  b=2\nafter = 3\n[y]\nk=\n")
        #expect(ini.sections["profile x"]?["k"] == "v")
        #expect(ini.sections["profile x"]?["nested.a"] == "1")
        #expect(ini.sections["profile x"]?["nested.b"] == "2")
        #expect(ini.sections["profile x"]?["after"] == "3")
        #expect(ini.sections["y"]?["k"] == "")
    }
}

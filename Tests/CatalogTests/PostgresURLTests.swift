import Testing
@testable import Catalog

/// A catalog URL as messages, logs and the bucket's owner record show it: never with its password,
/// in its user part or in its parameters (libpq takes `?password=` too).
@Test(arguments: [
    ("postgresql://modelfs:s3cret@db:5432/store", "postgresql://modelfs:***@db:5432/store"),
    ("postgresql://modelfs@db/store?password=s3cret", "postgresql://modelfs@db/store?password=***"),
    ("postgres://db/store?sslmode=require&PASSWORD=s3cret&application_name=x",
     "postgres://db/store?sslmode=require&PASSWORD=***&application_name=x"),
    ("postgresql://u:s3cret@db/store?password=s3cret", "postgresql://u:***@db/store?password=***"),
    ("postgresql://db/store?passwordless=1", "postgresql://db/store?passwordless=1"),
    ("postgresql://db/store", "postgresql://db/store"),
])
func aCatalogURLIsShownWithoutItsPassword(_ url: String, _ shown: String) throws {
    let redacted = try #require(PostgresURL(url)).redacted
    #expect(redacted == shown)
    #expect(!redacted.contains("s3cret"))
}

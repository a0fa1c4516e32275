import Foundation
import XCTest
@testable import Telemetry

final class EndpointTests: XCTestCase {
    func testAddressParsing() throws {
        XCTAssertEqual(try MetricsEndpoint.Address(parsing: "127.0.0.1:9464"), try MetricsEndpoint.Address(parsing: "127.0.0.1:9464"))
        XCTAssertEqual(try MetricsEndpoint.Address(parsing: "0.0.0.0:1").port, 1)
        for bad in ["9464", "localhost:9464", "127.0.0.1:", "127.0.0.1:70000", ":9464"] {
            XCTAssertThrowsError(try MetricsEndpoint.Address(parsing: bad), bad)
        }
    }
}

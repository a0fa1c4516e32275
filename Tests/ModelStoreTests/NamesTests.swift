import Testing
@testable import ModelStore

@Test func placeholder() {}

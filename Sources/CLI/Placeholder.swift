import ArgumentParser
public struct ModelFSCommand: AsyncParsableCommand {
    public init() {}
}

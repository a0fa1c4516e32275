import Foundation
import Testing
import ModelStore
import Registry
import Jobs

/// scripts/train_example.py, when python3 with numpy and safetensors is there.
enum TrainExample {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/train_example.py").path

    static func python(_ arguments: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return 127 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    static let available: Bool = FileManager.default.fileExists(atPath: script)
        && python(["-c", "import numpy, safetensors"]) == 0
}

@Suite("JobService with the example trainer", .enabled(if: TrainExample.available))
struct TrainExampleTests {
    func inputs(_ env: JobsEnv) throws {
        let base = env.dir + "/base.safetensors", data = env.dir + "/data.jsonl"
        #expect(TrainExample.python([TrainExample.script, "--init", base]) == 0)
        #expect(TrainExample.python([TrainExample.script, "--make-dataset", data, "--records", "40"]) == 0)
        try env.registry.createModel("clf")
        try env.putVersion("clf", "v1.safetensors", try #require(env.read(base)))
        try env.putDataset("reviews.jsonl", try #require(env.read(data)))
    }

    @Test func trainsAndStoresTheCheckpoint() throws {
        let env = try JobsEnv(seed: false)
        try inputs(env)
        let s = env.service("python3 '\(TrainExample.script)'")
        let id = try s.submit(JobRequest(model: "clf", version: "v1", dataset: "reviews", params: ["epochs": "2"])).id
        let job = try env.finish(s, id)
        #expect(job.status == .succeeded, "\(job.error ?? "") \(env.text(s.logPath(of: id)))")
        #expect(job.outputs == ["v2.safetensors"])
        let (_, v2) = try env.registry.version("clf", "v2")
        #expect(v2.lineage == Lineage(parentVersion: "v1", dataset: "reviews", job: id.rawValue))
        let stored = try env.objects.get(v2.objectKey, range: nil)
        // A safetensors file: an 8-byte little-endian header length, then a JSON header naming the job.
        #expect(stored.count > 8 && stored[8] == UInt8(ascii: "{"))
        #expect(String(decoding: stored.prefix(4096), as: UTF8.self).contains(id.rawValue))
        let log = env.text(s.logPath(of: id))
        #expect(log.contains("epoch 1/2") && log.contains("epoch 2/2"), "\(log)")
    }

    @Test func aFailingRunStoresNothing() throws {
        let env = try JobsEnv(seed: false)
        try inputs(env)
        let s = env.service("python3 '\(TrainExample.script)'")
        let id = try s.submit(JobRequest(model: "clf", version: "v1", dataset: "reviews", params: ["epochs": "2", "fail": "1"])).id
        let job = try env.finish(s, id)
        #expect(job.status == .failed && job.exitCode == 2)
        #expect(try env.versionNames("clf") == ["v1.safetensors"])
    }
}

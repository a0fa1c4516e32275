import Foundation
import ModelStore
import Registry

/// What a write to `services/submit` (or `modelfs serve start`) asks for: `model` and `version`
/// (a version, or an alias such as `@production` for a service that follows it), an optional
/// `name`, and free parameters that reach the command as `MODELFS_PARAM_*`.
public enum ServiceRequest {
    public static func parse(_ bytes: [UInt8]) throws(StoreError) -> Registry.ServiceStart {
        var fields = try RequestFields.parse(bytes, example: "model=NAME version=@production name=NAME")
        func take(_ key: String) throws(StoreError) -> String {
            guard let v = fields.removeValue(forKey: key), !v.isEmpty else { throw .invalid("the request names no \(key)") }
            return v
        }
        let model = try take("model")
        let version = try take("version")
        let name = fields.removeValue(forKey: "name")
        if let name { try Registry.validateServiceName(name) }
        try RequestFields.checkDistinctVariables(fields)
        return Registry.ServiceStart(model: model, version: version, name: name.map { ServiceID($0) }, params: fields)
    }
}

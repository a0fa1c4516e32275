/// The OpenAPI 3.1 document of the API, served as it is at `/api/v1/openapi.json`. Written by
/// hand beside the routes; `WebTests` checks that it describes every route the server has.
enum OpenAPI {
    static let document = #"""
{
 "openapi": "3.1.0",
 "info": {"title": "modelfs", "version": "1", "description": "The store's JSON API (modelfs web, docs/WEB.md). Reads from loopback need no user; changes need a bearer token from the server's tokens file (or a trusted proxy's header) and run as that user, with the mount's owner rules. Errors: {\"error\": {\"message\", \"errno\"}} with the status of the errno."},
 "paths": {
  "/health": {
   "get": {"summary": "Whether the server answers.", "security": [], "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}}
  },
  "/metrics": {
   "get": {"summary": "The process's metrics in Prometheus's text format (docs/OPERATIONS.md).", "security": [], "responses": {"200": {"description": "Prometheus text exposition 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}}}
  },
  "/api/v1/openapi.json": {
   "get": {"summary": "This document.", "security": [], "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}
  },
  "/api/v1/models": {
   "get": {"summary": "List models (modelfs models).", "parameters": [{"name": "type", "in": "query", "required": false, "schema": {"type": "string"}, "description": "text, image or general."}, {"name": "search", "in": "query", "required": false, "schema": {"type": "string"}, "description": "A part of the name, case-insensitive."}, {"$ref": "#/components/parameters/limit"}, {"$ref": "#/components/parameters/after"}], "responses": {"200": {"description": "Models in name order, a page of them.", "headers": {"Link": {"$ref": "#/components/headers/Link"}}, "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}}},
   "post": {"summary": "Create a model (modelfs model create).", "security": [{"bearer": []}], "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "type": {"type": "string", "enum": ["text", "image", "general"]}, "note": {"type": "string"}}}}}}, "responses": {"201": {"description": "The new model.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/NoUser"}, "403": {"$ref": "#/components/responses/Forbidden"}, "409": {"$ref": "#/components/responses/Conflict"}}}
  },
  "/api/v1/models/{model}": {
   "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The model's name."}],
   "patch": {"summary": "Rename a model, set its type or note.", "security": [{"bearer": []}], "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {"name": {"type": "string"}, "type": {"type": "string", "enum": ["text", "image", "general"]}, "note": {"type": "string"}}}}}}, "responses": {"200": {"description": "The model now.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/NoUser"}, "403": {"$ref": "#/components/responses/Forbidden"}, "409": {"$ref": "#/components/responses/Conflict"}}},
   "delete": {"summary": "Delete a model with all its versions (modelfs model rm).", "security": [{"bearer": []}], "responses": {"200": {"description": "The model as it was.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/NoUser"}, "403": {"$ref": "#/components/responses/Forbidden"}, "409": {"$ref": "#/components/responses/Conflict"}}},
   "get": {"summary": "One model.", "responses": {"200": {"description": "The model.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}}, "404": {"$ref": "#/components/responses/NotFound"}}}
  },
  "/api/v1/models/{model}/versions": {
   "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The model's name."}],
   "get": {"summary": "A model's versions, in name order (writers' temporary files left out), for whoever may list the model's directory.", "parameters": [{"$ref": "#/components/parameters/limit"}, {"$ref": "#/components/parameters/after"}], "responses": {"200": {"description": "Versions, a page of them.", "headers": {"Link": {"$ref": "#/components/headers/Link"}}, "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Version"}}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "403": {"$ref": "#/components/responses/Forbidden"}, "404": {"$ref": "#/components/responses/NotFound"}}}
  },
  "/api/v1/models/{model}/next": {
   "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The model's name."}],
   "get": {"summary": "The suggested next version (modelfs version next, .next).", "responses": {"200": {"description": "The name.", "content": {"application/json": {"schema": {"type": "object", "properties": {"version": {"type": "string"}}}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}}}
  },
  "/api/v1/models/{model}/versions/{version}": {
   "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The model's name."}, {"name": "version", "in": "path", "required": true, "schema": {"type": "string"}, "description": "A version (v1, v1.zip) or an alias (@production)."}],
   "get": {"summary": "A version's facts: size, sha256, status, note, owner, lineage, aliases, latest metrics.", "responses": {"200": {"description": "The version.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Version"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}}},
   "patch": {"summary": "Rename a version or set its note.", "security": [{"bearer": []}], "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {"name": {"type": "string"}, "note": {"type": "string"}}}}}}, "responses": {"200": {"description": "The version now.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Version"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/NoUser"}, "403": {"$ref": "#/components/responses/Forbidden"}, "409": {"$ref": "#/components/responses/Conflict"}}},
   "delete": {"summary": "Delete a version: never the model's last ready one (403, EPERM), nor one served, used by a job or named by an alias (409, EBUSY).", "security": [{"bearer": []}], "responses": {"200": {"description": "The version as it was.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Version"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/NoUser"}, "403": {"$ref": "#/components/responses/Forbidden"}, "409": {"$ref": "#/components/responses/Conflict"}}}
  },
  "/api/v1/models/{model}/versions/{version}/download": {
   "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The model's name."}, {"name": "version", "in": "path", "required": true, "schema": {"type": "string"}, "description": "A version (v1, v1.zip) or an alias (@production)."}],
   "get": {"summary": "The version's bytes, streamed from object storage; one range with Range: bytes=A-B (206). Readable by whoever may read the file through the mount; without a user, what others may read.", "parameters": [{"name": "Range", "in": "header", "required": false, "schema": {"type": "string"}, "description": "bytes=A-B, bytes=A- or bytes=-N"}], "responses": {"200": {"description": "All of it.", "headers": {"ETag": {"description": "\"sha256\"", "schema": {"type": "string"}}}, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}, "206": {"description": "The range asked for, with Content-Range.", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}, "403": {"$ref": "#/components/responses/Forbidden"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}, "416": {"description": "The range starts past the end.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
  },
  "/api/v1/models/{model}/aliases": {
   "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The model's name."}],
   "get": {"summary": "A model's aliases.", "responses": {"200": {"description": "Aliases.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Alias"}}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}}}
  },
  "/api/v1/models/{model}/aliases/{alias}": {
   "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The model's name."}, {"name": "alias", "in": "path", "required": true, "schema": {"type": "string"}, "description": "An alias, with or without its @."}],
   "put": {"summary": "Point an alias at a ready version (modelfs alias set).", "security": [{"bearer": []}], "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["version"], "properties": {"version": {"type": "string", "description": "v3, v3.zip, v3/ (an archive's view) or another alias."}}}}}}, "responses": {"200": {"description": "The alias.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Alias"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/NoUser"}, "403": {"$ref": "#/components/responses/Forbidden"}, "409": {"$ref": "#/components/responses/Conflict"}}},
   "delete": {"summary": "Remove an alias (the version stays).", "security": [{"bearer": []}], "responses": {"200": {"description": "The alias as it was.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Alias"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/NoUser"}, "403": {"$ref": "#/components/responses/Forbidden"}, "409": {"$ref": "#/components/responses/Conflict"}}}
  },
  "/api/v1/datasets": {
   "get": {"summary": "Datasets, with their size and records.", "responses": {"200": {"description": "Datasets.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Dataset"}}}}}}}
  },
  "/api/v1/jobs": {
   "get": {"summary": "Jobs, oldest first.", "responses": {"200": {"description": "Jobs.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}}}}}
  },
  "/api/v1/jobs/{job}": {
   "parameters": [{"name": "job", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The job's id."}],
   "get": {"summary": "One job.", "responses": {"200": {"description": "The job.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}}}
  },
  "/api/v1/services": {
   "get": {"summary": "Services, oldest first.", "responses": {"200": {"description": "Services.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Service"}}}}}}},
   "post": {"summary": "Start a service on a version or an alias it then follows (modelfs serve start): recorded starting, for a mount with --serve-command to run.", "security": [{"bearer": []}], "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["model", "version"], "properties": {"model": {"type": "string"}, "version": {"type": "string"}, "name": {"type": "string"}, "params": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}, "responses": {"201": {"description": "The service.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Service"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/NoUser"}, "403": {"$ref": "#/components/responses/Forbidden"}, "409": {"$ref": "#/components/responses/Conflict"}}}
  },
  "/api/v1/services/{service}/stop": {
   "parameters": [{"name": "service", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The service's name."}],
   "post": {"summary": "Stop a service (its owner or root).", "security": [{"bearer": []}], "responses": {"200": {"description": "The service now.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Service"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/NoUser"}, "403": {"$ref": "#/components/responses/Forbidden"}, "409": {"$ref": "#/components/responses/Conflict"}}}
  },
  "/api/v1/services/{service}/restart": {
   "parameters": [{"name": "service", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The service's name."}],
   "post": {"summary": "Start a service again (its owner or root).", "security": [{"bearer": []}], "responses": {"200": {"description": "The service now.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Service"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/NoUser"}, "403": {"$ref": "#/components/responses/Forbidden"}, "409": {"$ref": "#/components/responses/Conflict"}}}
  },
  "/api/v1/audit": {
   "get": {"summary": "The audit trail, oldest first (modelfs log).", "parameters": [{"name": "model", "in": "query", "required": false, "schema": {"type": "string"}, "description": "Only this model's lines."}], "responses": {"200": {"description": "Entries.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}}}}}
  },
  "/api/v1/versions": {
   "get": {"summary": "The duplicate check before an upload: ready versions with this content, in models the asker may list.", "parameters": [{"name": "sha256", "in": "query", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}, "description": "The content's sha256, 64 hexadecimal digits."}], "responses": {"200": {"description": "Versions by model and version name.", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object", "properties": {"model": {"type": "string"}, "version": {"type": "string"}, "size": {"type": "integer"}}}}}}}, "400": {"$ref": "#/components/responses/BadInput"}}}
  },
  "/api/v1/models/{model}/compare": {
   "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The model's name."}],
   "get": {"summary": "Versions side by side: lineage, job parameters, aliases, metrics per dataset (modelfs compare --json).", "parameters": [{"name": "versions", "in": "query", "required": true, "schema": {"type": "string"}, "description": "Versions separated by commas: v1,v2.zip,@production."}], "responses": {"200": {"description": "The comparison.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Comparison"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "403": {"$ref": "#/components/responses/Forbidden"}, "404": {"$ref": "#/components/responses/NotFound"}, "409": {"$ref": "#/components/responses/Conflict"}}}
  },
  "/api/v1/models/{model}/evaluations": {
   "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The model's name."}],
   "get": {"summary": "Every evaluation of the model's versions, by version name, oldest first.", "responses": {"200": {"description": "Evaluations.", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object", "properties": {"version": {"type": "string"}, "file": {"type": "string"}, "dataset": {"type": "string"}, "job": {"type": ["string", "null"]}, "metrics": {"type": "object", "additionalProperties": {"type": "number"}}, "created": {"type": "string", "format": "date-time"}}}}}}}, "403": {"$ref": "#/components/responses/Forbidden"}, "404": {"$ref": "#/components/responses/NotFound"}}}
  },
  "/api/v1/services/{service}/log": {
   "parameters": [{"name": "service", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The service's name."}],
   "get": {"summary": "The service's log from a byte offset (at most 1 MiB an answer), for its owner or root, on the node that runs it.", "parameters": [{"name": "offset", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}, "description": "The first byte (default 0)."}], "responses": {"200": {"description": "The bytes from the offset (none at or past the end).", "headers": {"X-Log-Size": {"description": "The log's size so far.", "schema": {"type": "integer"}}}, "content": {"text/plain": {"schema": {"type": "string"}}}}, "400": {"$ref": "#/components/responses/BadInput"}, "403": {"$ref": "#/components/responses/Forbidden"}, "404": {"$ref": "#/components/responses/NotFound"}}}
  },
  "/api/v1/stats": {
   "get": {"summary": "Counts: models by type, versions, datasets, bytes.", "responses": {"200": {"description": "Counts.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Stats"}}}}}}
  }
 },
 "components": {
  "parameters": {
   "limit": {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "description": "At most this many rows."},
   "after": {"name": "after", "in": "query", "required": false, "schema": {"type": "string"}, "description": "The rows after this name (the last of the previous page; one no longer there pages on from where it would be)."}
  },
  "headers": {
   "Link": {"description": "When more rows exist: <the same query with after=LAST>; rel=\"next\".", "schema": {"type": "string"}}
  },
  "securitySchemes": {
   "bearer": {"type": "http", "scheme": "bearer"}
  },
  "schemas": {
   "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}, "errno": {"type": "string", "description": "The errno the mount gives for the same refusal."}}}}},
   "Model": {"type": "object", "properties": {"name": {"type": "string"}, "type": {"type": "string", "enum": ["text", "image", "general"]}, "note": {"type": "string"}, "versions": {"type": "integer"}, "bytes": {"type": "integer"}, "created": {"type": "string", "format": "date-time"}, "modified": {"type": "string", "format": "date-time"}, "owner": {"type": ["object", "null"], "properties": {"uid": {"type": "integer"}, "gid": {"type": "integer"}, "mode": {"type": "integer"}}}}},
   "Version": {"type": "object", "properties": {"name": {"type": "string"}, "file": {"type": "string"}, "format": {"type": "string"}, "size": {"type": "integer"}, "sha256": {"type": ["string", "null"]}, "status": {"type": "string", "enum": ["uploading", "ready", "failed"]}, "error": {"type": ["string", "null"]}, "note": {"type": "string"}, "owner": {"type": ["object", "null"], "properties": {"uid": {"type": "integer"}, "gid": {"type": "integer"}, "mode": {"type": "integer"}}}, "lineage": {"type": "object", "properties": {"parentVersion": {"type": ["string", "null"]}, "dataset": {"type": ["string", "null"]}, "job": {"type": ["string", "null"]}}}, "aliases": {"type": "array", "items": {"type": "string"}}, "metrics": {"type": ["object", "null"], "additionalProperties": {"type": "number"}}, "metricsDataset": {"type": ["string", "null"]}, "created": {"type": "string", "format": "date-time"}, "modified": {"type": "string", "format": "date-time"}}},
   "Alias": {"type": "object", "properties": {"alias": {"type": "string"}, "version": {"type": "string"}, "file": {"type": "string"}, "modified": {"type": "string", "format": "date-time"}}},
   "Dataset": {"type": "object", "properties": {"name": {"type": "string"}, "file": {"type": "string"}, "format": {"type": "string"}, "size": {"type": "integer"}, "records": {"type": ["integer", "null"]}, "sha256": {"type": ["string", "null"]}, "status": {"type": "string"}, "error": {"type": ["string", "null"]}, "note": {"type": "string"}, "owner": {"type": ["object", "null"], "properties": {"uid": {"type": "integer"}, "gid": {"type": "integer"}, "mode": {"type": "integer"}}}, "created": {"type": "string", "format": "date-time"}, "modified": {"type": "string", "format": "date-time"}}},
   "Job": {"type": "object", "description": "A job as the catalog keeps it (see docs/JOBS.md).", "properties": {"id": {"type": "string"}, "model": {"type": "string"}, "version": {"type": "string"}, "dataset": {"type": "string"}, "status": {"type": "string"}, "params": {"type": "object", "additionalProperties": {"type": "string"}}, "outputs": {"type": "array", "items": {"type": "string"}}}},
   "Service": {"type": "object", "properties": {"name": {"type": "string"}, "model": {"type": "string"}, "version": {"type": "string"}, "alias": {"type": ["string", "null"]}, "status": {"type": "string", "enum": ["starting", "ready", "stopping", "stopped", "failed"]}, "reason": {"type": ["string", "null"]}, "endpoint": {"type": ["string", "null"]}, "executor": {"type": "string"}, "node": {"type": ["string", "null"]}, "owner": {"type": "object", "properties": {"uid": {"type": "integer"}, "gid": {"type": "integer"}}}, "params": {"type": "object", "additionalProperties": {"type": "string"}}, "created": {"type": "string", "format": "date-time"}}},
   "AuditEntry": {"type": "object", "properties": {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}, "uid": {"type": "integer"}, "pid": {"type": ["integer", "null"]}, "action": {"type": "string"}, "model": {"type": ["string", "null"]}, "target": {"type": ["string", "null"]}, "detail": {"type": "string"}}},
   "Comparison": {"type": "object", "properties": {"model": {"type": "string"}, "versions": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "file": {"type": "string"}, "status": {"type": "string"}, "size": {"type": "integer"}, "sha256": {"type": ["string", "null"]}, "created": {"type": "string", "format": "date-time"}, "lineage": {"type": ["object", "null"]}, "params": {"type": ["object", "null"], "additionalProperties": {"type": "string"}}, "aliases": {"type": "array", "items": {"type": "string"}}, "evaluations": {"type": "array", "items": {"type": "object", "properties": {"dataset": {"type": "string"}, "job": {"type": ["string", "null"]}, "metrics": {"type": "object", "additionalProperties": {"type": "number"}}, "created": {"type": "string", "format": "date-time"}}}}}}}}},
   "Stats": {"type": "object", "properties": {"models": {"type": "integer"}, "modelsByType": {"type": "object", "additionalProperties": {"type": "integer"}}, "versions": {"type": "integer"}, "readyVersions": {"type": "integer"}, "bytes": {"type": "integer"}, "datasets": {"type": "integer"}, "datasetBytes": {"type": "integer"}}}
  },
  "responses": {
   "BadInput": {"description": "Bad input (EINVAL).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
   "NotFound": {"description": "No such model, version, alias, job or service (ENOENT).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
   "NoUser": {"description": "A change without a user.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
   "Forbidden": {"description": "The user may not (EACCES, EPERM).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
   "Conflict": {"description": "Taken or in use (EEXIST, EBUSY).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
  }
 }
}
"""#
}

import Foundation
import Hummingbird
import ModelStore

/// "Import model", "Add version" and "Train": forms whose script calls the JSON API (``Assets``).
extension Pages {
    /// Files up to this size are hashed in the browser (`crypto.subtle` digests a whole buffer in
    /// memory) and looked up before they are sent; larger ones go up unchecked.
    static let duplicateCheckLimit = 512 << 20

    /// The file picker, drop zone and progress bar both upload forms share.
    static func uploadFields(note: Bool = true) -> String {
        """
        <label class="drop" id="drop">Drop a file here or <input type="file" id="file" accept="\(Formats.version.map { "." + $0 }.joined(separator: ","))"> \
        <small>(\(Formats.version.joined(separator: ", ")))</small></label>
        \(note ? "<label>Note <input type=\"text\" id=\"note\" placeholder=\"what changed\"></label>" : "")
        <p id="duplicate" class="warning" role="status" hidden></p>
        <div class="progress" hidden><div class="fill" id="progress-fill"></div></div>
        <p id="progress" role="status"></p>
        <p id="message" class="error" role="alert" hidden></p>
        <button type="submit" id="upload">Upload</button>
        """
    }

    func importPage(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        HTML.page("Import model", viewer, """
            <h1>Import model</h1>
            <form id="upload-form" class="card form" data-mode="import" data-check-limit="\(Pages.duplicateCheckLimit)">
            <label>Name <input type="text" id="model" required pattern="[^/]+" autocomplete="off"></label>
            <label>Type <select id="type">\(ModelType.allCases.map { "<option>\($0.rawValue)</option>" }.joined())</select></label>
            <label>Version <input type="text" id="version" value="v1" required></label>
            \(Pages.uploadFields())
            </form>
            """)
    }

    func addVersionPage(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        let named = Pages.call(viewer, ["model": Pages.parameter(context, "model")])
        let m = try Pages.rows(try api.getModel(named), API.ModelRow.self)
        let next = try Pages.rows(try api.nextVersion(named), API.Next.self).version
        return HTML.page("Add a version of \(m.name)", viewer, """
            <h1>Add a version of <a href="/models/\(HTML.segment(m.name))">\(HTML.escape(m.name))</a></h1>
            <form id="upload-form" class="card form" data-mode="add" data-model="\(HTML.escape(m.name))" data-check-limit="\(Pages.duplicateCheckLimit)">
            <label>Version <input type="text" id="version" value="\(HTML.escape(next))" required> <small>suggested: the next after the newest</small></label>
            \(Pages.uploadFields())
            </form>
            """)
    }

    func trainPage(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        let named = Pages.call(viewer, ["model": Pages.parameter(context, "model")])
        let m = try Pages.rows(try api.getModel(named), API.ModelRow.self)
        // The newest first, a page of them: the version a training starts from is a recent one.
        let listed = try api.listVersions(Pages.call(viewer, named.parameters, ["limit": String(API.Paging.maximumLimit)]))
        let ready = try Pages.listed(listed, name: \API.VersionRow.name).rows.filter { $0.status == .ready }
            .sorted { $0.created > $1.created }.prefix(Pages.pageSize)
        let datasets = try Pages.rows(try api.listDatasets(named), [API.DatasetRow].self).filter { $0.status == .ready }
        let options = ready.map { "<option value=\"\(HTML.escape($0.name))\">\(HTML.escape($0.file)) · \(HTML.bytes($0.size))</option>" }.joined()
        let rows = datasets.enumerated().map { i, d in
            """
            <tr><td><input type="radio" name="dataset" value="\(HTML.escape(d.name))" id="dataset-\(i)"\(i == 0 ? " checked" : "")></td>\
            <td><label for="dataset-\(i)">\(HTML.escape(d.file))</label></td><td>\(HTML.bytes(d.size))</td>\
            <td>\(d.records.map(String.init) ?? "-")</td><td>\(HTML.escape(d.note))</td></tr>
            """
        }.joined(separator: "\n")
        return HTML.page("Train \(m.name)", viewer, """
            <h1>Train <a href="/models/\(HTML.segment(m.name))">\(HTML.escape(m.name))</a></h1>
            <form id="train-form" class="card form" data-model="\(HTML.escape(m.name))">
            <label>From version <select id="from">\(options)</select></label>
            <h2>Dataset</h2>
            \(datasets.isEmpty ? "<p>No dataset is ready: copy one into <code>datasets/</code> of a mount first.</p>" : "")
            <table class="list"><thead><tr><th></th><th>Dataset</th><th>Size</th><th>Records</th><th>Note</th></tr></thead><tbody>\(rows)</tbody></table>
            <label>Hyper-parameters <input type="text" id="params" placeholder="epochs=3 lr=0.001"></label>
            <p id="message" class="error" role="alert" hidden></p>
            <button type="submit"\(ready.isEmpty || datasets.isEmpty ? " disabled" : "")>Start training</button>
            </form>
            """)
    }
}

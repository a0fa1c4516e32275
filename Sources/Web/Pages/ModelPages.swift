import Foundation
import Hummingbird
import ModelStore
import Registry

/// The model list, a model's page (versions, lineage) and the comparison of versions.
extension Pages {
    var port: any StorePort { api.port }

    // MARK: The model list

    func modelList(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        let stats = try Pages.rows(try api.stats(Pages.call(viewer)), StoreStats.self)
        let type = Pages.query(request, "type"), search = Pages.query(request, "search") ?? ""
        let card = { (label: String, count: Int, filter: String?) in
            let on = filter == type ? " on" : ""
            return "<a class=\"card stat\(on)\" href=\"/\(filter.map { "?type=\($0)" } ?? "")\" data-type=\"\(filter ?? "")\"><b>\(count)</b><span>\(label)</span></a>"
        }
        let (rows, next) = try modelPage(viewer, type: type, search: search, after: nil)
        return HTML.page("Models", viewer, """
            <h1>Models</h1>
            <section class="stats">\(card("all models", stats.models, nil))\(card("text", stats.modelsByType["text"] ?? 0, "text"))\
            \(card("image", stats.modelsByType["image"] ?? 0, "image"))\(card("general", stats.modelsByType["general"] ?? 0, "general"))</section>
            <p class="bar"><input id="search" type="search" placeholder="Search models by name" value="\(HTML.escape(search))" \
            data-url="/fragments/models\(type.map { "?type=" + HTML.query($0) } ?? "")" autocomplete="off">\
            <a class="button" href="/import">Import model</a></p>
            <table class="list"><thead><tr><th>Model</th><th>Type</th><th>Versions</th><th>Size</th><th>Modified</th><th>Note</th></tr></thead>
            <tbody id="models">\(rows)</tbody></table>
            \(Pages.more("more-models", from: "/fragments/models?\(type.map { "type=" + HTML.query($0) + "&" } ?? "")search=\(HTML.query(search))", next: next))
            """)
    }

    func modelRows(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        let (rows, next) = try modelPage(viewer, type: Pages.query(request, "type"), search: Pages.query(request, "search") ?? "",
                                         after: Pages.query(request, "after"))
        return Pages.fragment(rows, next: next)
    }

    /// The rows of one page of models, as `GET /api/v1/models` filters them.
    func modelPage(_ viewer: Viewer, type: String?, search: String, after: String?) throws -> (String, String?) {
        let query = ["type": type ?? "", "search": search, "after": after ?? "", "limit": String(Pages.pageSize)]
        let page = try Pages.listed(try api.listModels(Pages.call(viewer, [:], query)), name: \API.ModelRow.name)
        let rows = page.rows.map { row in
            "<tr><td><a href=\"/models/\(HTML.segment(row.name))\">\(HTML.escape(row.name))</a></td><td>\(row.type.rawValue)</td>"
                + "<td>\(row.versions)</td><td>\(HTML.bytes(row.bytes))</td><td>\(HTML.date(row.modified))</td><td>\(HTML.escape(row.note))</td></tr>"
        }.joined(separator: "\n")
        return (rows.isEmpty && after == nil ? "<tr class=\"empty\"><td colspan=\"6\">No model matches.</td></tr>" : rows, page.next)
    }

    // MARK: A model's page

    func modelPage(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        let named = Pages.call(viewer, ["model": Pages.parameter(context, "model")])
        let row = try Pages.rows(try api.getModel(named), API.ModelRow.self)
        let (rows, next) = try versionPage(viewer, row.name, after: nil)
        let m = try port.model(called: row.name)
        let link = "/models/\(HTML.segment(m.name))"
        return HTML.page(m.name, viewer, """
            <h1>\(HTML.escape(m.name)) <span class="tag">\(m.type.rawValue)</span></h1>
            <p class="note">\(HTML.escape(m.note))</p>
            <p class="facts">\(row.versions) versions · \(HTML.bytes(row.bytes)) · owner uid \(m.owner.map { String($0.uid) } ?? "of the store") · \
            modified \(HTML.date(m.modified))</p>
            <p class="bar"><a class="button" href="\(link)/add">Add version</a><a class="button" href="\(link)/train">Train</a>\
            <button type="button" id="compare" data-url="\(link)/compare">Compare selected</button></p>
            <p id="message" class="error" role="alert" hidden></p>
            <table class="list" id="versions-table" data-model="\(HTML.escape(m.name))"><thead><tr><th></th><th>Version</th><th>Status</th><th>Size</th>\
            <th>sha256</th><th>Note</th><th>Aliases</th><th>Metrics</th><th>Created</th><th></th></tr></thead>
            <tbody id="versions">\(rows)</tbody></table>
            \(Pages.more("more-versions", from: "/fragments\(link)/versions", next: next))
            <h2>Lineage</h2>
            \(Lineages.svg(model: m.name, try port.versions(of: m.id).filter { !$0.isScratch }))
            """)
    }

    func versionRows(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        let (rows, next) = try versionPage(viewer, Pages.parameter(context, "model"), after: Pages.query(request, "after"))
        return Pages.fragment(rows, next: next)
    }

    /// One page of a model's versions as `GET …/versions` gives them.
    func versionPage(_ viewer: Viewer, _ model: String, after: String?) throws -> (String, String?) {
        let query = ["after": after ?? "", "limit": String(Pages.pageSize)]
        let page = try Pages.listed(try api.listVersions(Pages.call(viewer, ["model": model], query)), name: \API.VersionRow.name)
        let rows = page.rows.map { row in
            let metrics = (row.metrics ?? [:]).sorted { $0.key < $1.key }.map { "\(HTML.escape($0.key)) \(HTML.number($0.value))" }
                .joined(separator: ", ")
            let name = HTML.escape(row.name)
            return """
                <tr id="version-\(name)" data-version="\(name)"><td><input type="checkbox" class="pick" value="\(name)" aria-label="compare \(name)"></td>\
                <td>\(HTML.escape(row.file))</td><td>\(HTML.status(row.status.rawValue))\(row.error.map { " <small>\(HTML.escape($0))</small>" } ?? "")</td>\
                <td>\(HTML.bytes(row.size))</td><td><code title="\(HTML.escape(row.sha256 ?? ""))">\(HTML.escape(String((row.sha256 ?? "").prefix(12))))</code></td>\
                <td>\(HTML.escape(row.note))</td><td>\(HTML.escape(row.aliases.joined(separator: " ")))</td>\
                <td>\(metrics)\(row.metricsDataset.map { metrics.isEmpty ? "" : " <small>on \(HTML.escape($0))</small>" } ?? "")</td>\
                <td>\(HTML.date(row.created))</td><td><button type="button" class="delete danger" data-version="\(name)">Delete</button></td></tr>
                """
        }.joined(separator: "\n")
        return (rows, page.next)
    }

    // MARK: Compare

    func comparePage(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        let m = try port.model(called: Pages.parameter(context, "model"))
        let names = (Pages.query(request, "versions") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !names.isEmpty else { throw StoreError.invalid("name the versions to compare: ?versions=v1,v2") }
        guard names.count <= 20 else { throw StoreError.invalid("at most 20 versions are compared at once") }
        // What `modelfs compare --json` prints, read as GET …/compare answers it.
        let query = ["versions": names.joined(separator: ",")]
        let rows = try Pages.rows(try api.compare(Pages.call(viewer, ["model": m.name], query)), Comparison.self).versions
        let evaluations = rows.map(\.evaluations)
        var facts: [(String, [String])] = [
            ("status", rows.map(\.status.rawValue)), ("size", rows.map { HTML.bytes($0.size) }),
            ("sha256", rows.map { String(($0.sha256 ?? "-").prefix(16)) }), ("created", rows.map { HTML.date($0.created) }),
            ("aliases", rows.map { $0.aliases.joined(separator: " ") }), ("parent", rows.map { $0.lineage?.parentVersion ?? "-" }),
            ("dataset", rows.map { $0.lineage?.dataset ?? "-" }), ("job", rows.map { $0.lineage?.job ?? "-" }),
        ]
        for key in Set(rows.flatMap { ($0.params ?? [:]).keys }).sorted() {
            facts.append(("param " + key, rows.map { $0.params?[key] ?? "-" }))
        }
        // Metrics by dataset, then by name: each row compares like with like (as `modelfs compare`).
        let pairs = Set(evaluations.flatMap { $0.flatMap { e in e.metrics.keys.map { Metric(dataset: e.dataset, name: $0) } } }).sorted()
        let values = pairs.map { p in evaluations.map { $0.first { $0.dataset == p.dataset }?.metrics[p.name] } }
        facts += zip(pairs, values).map { p, v in ("\(p.name) (\(p.dataset))", v.map { $0.map(HTML.number) ?? "-" }) }
        let table = "<table class=\"list compare\"><thead><tr><th></th>" + rows.map { "<th>\(HTML.escape($0.name))</th>" }.joined() + "</tr></thead><tbody>"
            + facts.map { label, cells in "<tr><th>\(HTML.escape(label))</th>" + cells.map { "<td>\(HTML.escape($0))</td>" }.joined() + "</tr>" }.joined(separator: "\n")
            + "</tbody></table>"
        return HTML.page("Compare \(m.name)", viewer, """
            <h1>Compare <a href="/models/\(HTML.segment(m.name))">\(HTML.escape(m.name))</a></h1>
            \(table)
            <h2>Metrics</h2>
            \(pairs.isEmpty ? "<p>No version here has been evaluated yet.</p>" : Charts.bars(series: rows.map(\.name), groups: zip(pairs, values).map { ("\($0.name) (\($0.dataset))", $1) }))
            """)
    }

    struct Metric: Hashable, Comparable {
        var dataset: String, name: String
        static func < (a: Metric, b: Metric) -> Bool { (a.dataset, a.name) < (b.dataset, b.name) }
    }
}

/// Inline SVG: no script, no library.
enum Charts {
    static let palette = ["#3b6fd4", "#e07b39", "#3a9d5d", "#b54b9b", "#c9a227", "#4aa3b5"]

    /// One group of bars per metric, one bar per version, each group scaled to its largest value.
    static func bars(series: [String], groups: [(String, [Double?])]) -> String {
        let barHeight = 14, gap = 4, labelWidth = 220, width = 420
        var y = 0, body = ""
        for (label, values) in groups {
            body += "<text x=\"0\" y=\"\(y + 12)\" class=\"label\">\(HTML.escape(label))</text>"
            let top = values.compactMap { $0.map(abs) }.max() ?? 0
            for (i, value) in values.enumerated() {
                let yy = y + i * (barHeight + gap)
                let w = value.map { top > 0 ? Int((abs($0) / top) * Double(width)) : 0 } ?? 0
                body += "<rect x=\"\(labelWidth)\" y=\"\(yy)\" width=\"\(max(w, 1))\" height=\"\(barHeight)\" fill=\"\(palette[i % palette.count])\">"
                    + "<title>\(HTML.escape(series[i])): \(value.map(HTML.number) ?? "-")</title></rect>"
                    + "<text x=\"\(labelWidth + max(w, 1) + 4)\" y=\"\(yy + 11)\" class=\"value\">\(HTML.escape(series[i])) \(value.map(HTML.number) ?? "-")</text>"
            }
            y += values.count * (barHeight + gap) + 12
        }
        return "<svg class=\"chart\" role=\"img\" aria-label=\"metrics by version\" width=\"\(labelWidth + width + 160)\" height=\"\(y)\" "
            + "viewBox=\"0 0 \(labelWidth + width + 160) \(y)\">\(body)</svg>"
    }
}

/// A model's lineage as a graph: each version a box in the column of its generation, an arrow
/// from a parent to each version trained from it, labelled with the dataset and the job.
enum Lineages {
    /// The newest edges drawn at most: a model of thousands of trained versions stays a readable picture.
    static let maximumEdges = 60

    static func svg(model: String, _ versions: [Version]) -> String {
        let byName = Dictionary(versions.flatMap { v in [(v.name, v), (v.fileName, v)] }, uniquingKeysWith: { a, _ in a })
        var edges = versions.compactMap { v in v.lineage.parentVersion.flatMap { byName[$0] }.map { (parent: $0, child: v) } }
        guard !edges.isEmpty else { return "<p class=\"lineage none\">No version of \(HTML.escape(model)) was trained from another here.</p>" }
        let hidden = max(0, edges.count - maximumEdges)
        edges = Array(edges.sorted { $0.child.created < $1.child.created }.suffix(maximumEdges))
        // Generation: steps from a version with no drawn parent.
        let parentOf = Dictionary(edges.map { ($0.child.id, $0.parent) }, uniquingKeysWith: { a, _ in a })
        func depth(_ v: Version) -> Int {
            var d = 0, at = v, seen: Set<VersionID> = [v.id]
            while let p = parentOf[at.id], seen.insert(p.id).inserted { d += 1; at = p }
            return d
        }
        var nodes: [Version] = []
        for e in edges { for v in [e.parent, e.child] where !nodes.contains(where: { $0.id == v.id }) { nodes.append(v) } }
        let boxW = 120, boxH = 30, colW = 360, rowH = 64
        var rowsUsed: [Int: Int] = [:], place: [VersionID: (x: Int, y: Int)] = [:]
        for v in nodes {
            let column = depth(v)
            let row = rowsUsed[column, default: 0]
            rowsUsed[column] = row + 1
            place[v.id] = (10 + column * colW, 24 + row * rowH)
        }
        var body = ""
        for e in edges {
            guard let a = place[e.parent.id], let b = place[e.child.id] else { continue }
            let label = [e.child.lineage.dataset, e.child.lineage.job].compactMap { $0 }.joined(separator: " · ")
            body += "<path class=\"edge\" d=\"M\(a.x + boxW) \(a.y + boxH / 2) C\(a.x + boxW + 60) \(a.y + boxH / 2) \(b.x - 60) \(b.y + boxH / 2) \(b.x) \(b.y + boxH / 2)\" marker-end=\"url(#arrow)\"/>"
                + "<text class=\"edge-label\" x=\"\((a.x + boxW + b.x) / 2)\" y=\"\((a.y + b.y) / 2 + boxH / 2 - 8)\" text-anchor=\"middle\">\(HTML.escape(label))</text>"
        }
        for v in nodes {
            guard let p = place[v.id] else { continue }
            body += "<g class=\"node \(v.status.rawValue)\" data-version=\"\(HTML.escape(v.name))\"><rect x=\"\(p.x)\" y=\"\(p.y)\" width=\"\(boxW)\" height=\"\(boxH)\" rx=\"6\"/>"
                + "<text x=\"\(p.x + boxW / 2)\" y=\"\(p.y + 20)\" text-anchor=\"middle\">\(HTML.escape(v.name))</text></g>"
        }
        let width = (rowsUsed.keys.max() ?? 0) * colW + boxW + 20, height = (rowsUsed.values.max() ?? 1) * rowH + 24
        return """
            \(hidden > 0 ? "<p class=\"facts\">The newest \(maximumEdges) of \(edges.count + hidden) trainings are drawn.</p>" : "")
            <svg class="lineage" id="lineage" role="img" aria-label="lineage of \(HTML.escape(model))" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)">\
            <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0 0L10 5L0 10z"/></marker></defs>\
            \(body)</svg>
            """
    }
}

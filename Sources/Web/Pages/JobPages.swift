import Foundation
import Hummingbird
import ModelStore

/// Jobs and services: their status and log, kept live by the page's script (it polls the JSON
/// API's status and `…/log?offset=N`).
extension Pages {
    func jobsPage(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        let all = try Pages.rows(try api.listJobs(Pages.call(viewer)), [Job].self).sorted { $0.created > $1.created }
        let after = Pages.query(request, "after")
        let page = Pages.page(all, after: after, name: \.id.rawValue)
        let rows = page.rows.map { j in
            """
            <tr data-job="\(HTML.escape(j.id.rawValue))"\(j.status.isActive ? " class=\"live\"" : "")><td><a href="/jobs/\(HTML.segment(j.id.rawValue))">\(HTML.escape(j.id.rawValue))</a></td>\
            <td>\(j.kind.rawValue)</td><td class="job-status">\(HTML.status(j.status.rawValue))</td><td><a href="/models/\(HTML.segment(j.model))">\(HTML.escape(j.model))</a> \
            \(HTML.escape(j.version))</td><td>\(HTML.escape(j.dataset))</td><td class="job-outputs">\(HTML.escape(j.outputs.joined(separator: " ")))</td>\
            <td>\(HTML.date(j.created))</td></tr>
            """
        }.joined(separator: "\n")
        return HTML.page("Jobs", viewer, """
            <h1>Jobs</h1>
            <table class="list" id="jobs"><thead><tr><th>Job</th><th>Kind</th><th>Status</th><th>From</th><th>Dataset</th><th>Versions made</th>\
            <th>Created</th></tr></thead><tbody>\(rows.isEmpty ? "<tr class=\"empty\"><td colspan=\"7\">No job yet.</td></tr>" : rows)</tbody></table>
            \(page.next.map { "<p><a class=\"button\" href=\"/jobs?after=\(HTML.query($0))\">Older jobs</a></p>" } ?? "")
            """)
    }

    func jobPage(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        let j = try Pages.rows(try api.getJob(Pages.call(viewer, ["job": Pages.parameter(context, "job")])), Job.self)
        let facts: [(String, String)] = [
            ("kind", j.kind.rawValue), ("model", j.model), ("from version", j.version), ("dataset", j.dataset),
            ("hyper-parameters", j.params.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")),
            ("executor", j.executor + (j.executorID.map { " " + $0 } ?? "")), ("created", HTML.date(j.created)),
            ("started", HTML.date(j.started)), ("finished", HTML.date(j.finished)),
        ]
        let outputs = j.outputs.map { "<a href=\"/models/\(HTML.segment(j.model))#version-\(HTML.escape($0))\">\(HTML.escape($0))</a>" }.joined(separator: " ")
        return HTML.page("Job \(j.id.rawValue)", viewer, """
            <h1>Job \(HTML.escape(j.id.rawValue))</h1>
            <section id="job" data-job="\(HTML.escape(j.id.rawValue))" data-model="\(HTML.escape(j.model))">
            <p>Status: <span id="job-status">\(HTML.status(j.status.rawValue))</span> <span id="job-error" class="error">\(HTML.escape(j.error ?? ""))</span></p>
            <table class="facts">\(facts.map { "<tr><th>\($0.0)</th><td id=\"job-\($0.0.replacingOccurrences(of: " ", with: "-"))\">\(HTML.escape($0.1))</td></tr>" }.joined())\
            <tr><th>versions made</th><td id="job-outputs">\(outputs)</td></tr></table>
            <h2>Log</h2><pre id="log" class="log" data-url="/api/v1/jobs/\(HTML.segment(j.id.rawValue))/log"></pre>
            </section>
            """)
    }

    func servicesPage(_ request: Request, _ context: WebContext, _ viewer: Viewer) throws -> Response {
        let services = try Pages.rows(try api.listServices(Pages.call(viewer)), [API.ServiceRow].self).sorted { $0.created > $1.created }
            .prefix(Pages.pageSize)
        let rows = services.map { s in
            let name = HTML.escape(s.name)
            return """
                <tr data-service="\(name)"><td>\(name)</td><td class="service-status">\(HTML.status(s.status.rawValue))</td>\
                <td><a href="/models/\(HTML.segment(s.model))">\(HTML.escape(s.model))</a> \(HTML.escape(s.alias ?? s.version))</td>\
                <td>\(s.endpoint.map { "<code>\(HTML.escape($0))</code>" } ?? "")</td><td>\(HTML.escape(s.reason ?? ""))</td><td>\(HTML.date(s.created))</td>\
                <td><button type="button" class="service-log" data-service="\(name)">Log</button>\
                <button type="button" class="service-action" data-action="restart" data-service="\(name)">Restart</button>\
                <button type="button" class="service-action danger" data-action="stop" data-service="\(name)">Stop</button></td></tr>
                """
        }.joined(separator: "\n")
        return HTML.page("Services", viewer, """
            <h1>Services</h1>
            <p id="message" class="error" role="alert" hidden></p>
            <table class="list" id="services"><thead><tr><th>Service</th><th>Status</th><th>Serves</th><th>Endpoint</th><th>Reason</th><th>Created</th>\
            <th></th></tr></thead><tbody>\(rows.isEmpty ? "<tr class=\"empty\"><td colspan=\"7\">No service yet.</td></tr>" : rows)</tbody></table>
            <h2 id="service-log-title" hidden></h2><pre id="log" class="log" hidden></pre>
            """)
    }
}

#include "report/run_report.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/json.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

// ---- the run's files ----------------------------------------------------------------------------

struct NodeRun {
    int node = 0;
    std::vector<Json> steps;  // metrics lines, one per outer step
    std::optional<Json> summary;
    std::optional<Json> status;
};

std::optional<Json> read_json_file(const fs::path& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::stringstream text;
    text << in.rdbuf();
    try {
        return parse_json(text.str());
    } catch (const JsonError&) {
        return std::nullopt;  // being rewritten: the next report will have it
    }
}

std::vector<NodeRun> read_run(const fs::path& run_dir) {
    std::map<int, NodeRun> nodes;
    std::error_code ignored;
    for (const auto& entry : fs::directory_iterator(run_dir / "metrics", ignored)) {
        const std::string name = entry.path().filename().string();
        int node = -1;
        if (std::sscanf(name.c_str(), "node-%d.jsonl", &node) != 1 || node < 0) continue;
        NodeRun& run = nodes[node];
        run.node = node;
        std::ifstream in(entry.path());
        for (std::string line; std::getline(in, line);) {
            try {
                run.steps.push_back(parse_json(line));
            } catch (const JsonError&) {
                // the line a running node is writing
            }
        }
    }
    for (auto& [node, run] : nodes) {
        run.summary = read_json_file(run_dir / "summary" / ("node-" + std::to_string(node) + ".json"));
        run.status = read_json_file(run_dir / "status" / ("node-" + std::to_string(node) + ".json"));
    }
    std::vector<NodeRun> out;
    for (auto& [node, run] : nodes) out.push_back(std::move(run));
    return out;
}

double number_of(const Json& object, const char* key, double otherwise = 0) {
    return json_number(object, key).value_or(otherwise);
}

std::string escape(const std::string& text) {
    std::string out;
    for (char c : text) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
        }
    }
    return out;
}

std::string format(const char* spec, double value) {
    char text[64];
    std::snprintf(text, sizeof text, spec, value);
    return text;
}

// ---- charts -------------------------------------------------------------------------------------

const char* const kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct Series {
    std::string name;
    std::string color;
    std::vector<std::pair<double, double>> points;  // (outer step, value)
    bool dashed = false;  // and a dot at each point: sparse series (held-out loss)
};

struct Marker {
    double step;
    std::string label;
    std::string color;
};

// Ticks at 1, 2 or 5 times a power of ten, about `count` of them over [low, high].
std::vector<double> ticks(double low, double high, int count) {
    const double raw = (high - low) / count;
    const double power = std::pow(10.0, std::floor(std::log10(raw)));
    const double step = raw / power < 1.5 ? power : raw / power < 3.5 ? 2 * power : raw / power < 7.5 ? 5 * power : 10 * power;
    std::vector<double> out;
    for (double t = std::ceil(low / step) * step; t <= high + step * 1e-9; t += step) out.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
    return out;
}

std::string tick_text(double value) {
    const double a = std::fabs(value);
    if (a >= 1e9) return format("%.3gG", value / 1e9);
    if (a >= 1e6) return format("%.3gM", value / 1e6);
    if (a >= 1e4) return format("%.3gk", value / 1e3);
    return format("%.4g", value);
}

// A line chart over outer steps: one polyline per series (class "series", data-series its name),
// markers as dashed vertical lines with a tooltip.
std::string chart(const std::string& id, const std::string& title, const std::vector<Series>& series,
                  const std::vector<Marker>& markers, bool from_zero) {
    constexpr double kWidth = 760, kHeight = 250, kLeft = 64, kRight = 150, kTop = 30, kBottom = 34;
    double x_low = 1e300, x_high = -1e300, y_low = 1e300, y_high = -1e300;
    for (const Series& s : series)
        for (const auto& [x, y] : s.points) {
            if (!std::isfinite(y)) continue;
            x_low = std::min(x_low, x), x_high = std::max(x_high, x);
            y_low = std::min(y_low, y), y_high = std::max(y_high, y);
        }
    std::ostringstream svg;
    svg << "<figure><svg class=\"chart\" data-chart=\"" << id << "\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << kWidth << " " << kHeight
        << "\" role=\"img\" aria-label=\"" << escape(title) << "\">\n<text class=\"title\" x=\"" << kLeft << "\" y=\"18\">"
        << escape(title) << "</text>\n";
    if (x_low > x_high) {
        svg << "<text x=\"" << kLeft << "\" y=\"" << kHeight / 2 << "\">no data yet</text></svg></figure>\n";
        return svg.str();
    }
    if (from_zero) y_low = std::min(0.0, y_low);
    if (y_high - y_low < 1e-12) y_high = y_low + (y_low == 0 ? 1 : std::fabs(y_low) * 0.1);
    const double pad = (y_high - y_low) * 0.05;
    y_high += pad;
    if (!from_zero || y_low < 0) y_low -= pad;
    if (x_high == x_low) x_high = x_low + 1;
    const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
    auto px = [&](double x) { return kLeft + (x - x_low) / (x_high - x_low) * plot_w; };
    auto py = [&](double y) { return kTop + (1 - (y - y_low) / (y_high - y_low)) * plot_h; };

    for (double t : ticks(y_low, y_high, 5))
        svg << "<line class=\"grid\" x1=\"" << kLeft << "\" x2=\"" << kLeft + plot_w << "\" y1=\"" << format("%.1f", py(t))
            << "\" y2=\"" << format("%.1f", py(t)) << "\"/><text class=\"tick\" x=\"" << kLeft - 6 << "\" y=\""
            << format("%.1f", py(t) + 4) << "\" text-anchor=\"end\">" << tick_text(t) << "</text>\n";
    for (double t : ticks(x_low, x_high, std::min(10, static_cast<int>(x_high - x_low) + 1))) {
        if (std::fabs(t - std::round(t)) > 1e-9) continue;  // outer steps are whole
        svg << "<text class=\"tick\" x=\"" << format("%.1f", px(t)) << "\" y=\"" << kTop + plot_h + 16
            << "\" text-anchor=\"middle\">" << tick_text(t) << "</text>\n";
    }
    svg << "<text class=\"axis\" x=\"" << kLeft + plot_w / 2 << "\" y=\"" << kHeight - 4
        << "\" text-anchor=\"middle\">outer step</text>\n";
    svg << "<rect class=\"frame\" x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << plot_w << "\" height=\"" << plot_h
        << "\"/>\n";
    for (const Marker& m : markers)
        svg << "<line class=\"marker\" stroke=\"" << m.color << "\" x1=\"" << format("%.1f", px(m.step)) << "\" x2=\""
            << format("%.1f", px(m.step)) << "\" y1=\"" << kTop << "\" y2=\"" << kTop + plot_h << "\"><title>"
            << escape(m.label) << "</title></line>\n";
    int row = 0;
    for (const Series& s : series) {
        svg << "<polyline class=\"series\" data-series=\"" << escape(s.name) << "\" fill=\"none\" stroke=\"" << s.color
            << "\" stroke-width=\"1.6\"" << (s.dashed ? " stroke-dasharray=\"5,3\"" : "") << " points=\"";
        bool first = true;
        for (const auto& [x, y] : s.points) {
            if (!std::isfinite(y)) continue;
            svg << (first ? "" : " ") << format("%.1f", px(x)) << "," << format("%.1f", py(y));
            first = false;
        }
        svg << "\"><title>" << escape(s.name) << "</title></polyline>\n";
        if (s.dashed)
            for (const auto& [x, y] : s.points)
                if (std::isfinite(y))
                    svg << "<circle r=\"2.5\" fill=\"" << s.color << "\" cx=\"" << format("%.1f", px(x)) << "\" cy=\""
                        << format("%.1f", py(y)) << "\"><title>" << escape(s.name) << ", step " << format("%.0f", x) << ": "
                        << format("%.4f", y) << "</title></circle>\n";
        const double ly = kTop + 8 + 16 * row++;
        svg << "<line x1=\"" << kWidth - kRight + 12 << "\" x2=\"" << kWidth - kRight + 32 << "\" y1=\"" << ly << "\" y2=\""
            << ly << "\" stroke=\"" << s.color << "\" stroke-width=\"2\"" << (s.dashed ? " stroke-dasharray=\"5,3\"" : "")
            << "/><text class=\"legend\" x=\"" << kWidth - kRight + 38 << "\" y=\"" << ly + 4 << "\">" << escape(s.name)
            << "</text>\n";
    }
    svg << "</svg></figure>\n";
    return svg.str();
}

// One series per node of a metrics field (scaled).
std::vector<Series> per_node(const std::vector<NodeRun>& runs, const char* key, double scale = 1) {
    std::vector<Series> out;
    for (const NodeRun& run : runs) {
        Series s{"node " + std::to_string(run.node), kColors[run.node % 10], {}};
        for (const Json& step : run.steps)
            if (const auto value = json_number(step, key))
                s.points.emplace_back(number_of(step, "outer_step"), *value * scale);
        out.push_back(std::move(s));
    }
    return out;
}

// ---- events -------------------------------------------------------------------------------------

struct Event {
    double step;
    int node;
    std::string kind;  // join, drop, recovery, excluded, checkpoint, checkpoint failed, checkpoint skipped
    std::string text;
};

// Events for the checkpoint totals in `fields` that grew past the counts so far: a save at the
// step of the last one saved, a failure or skip at `step`.
void count_checkpoints(const Json& fields, const std::string& who, int node, double last_saved, double step, double* saved,
                       double* failed, double* skipped, std::vector<Event>* events) {
    auto grow = [&](const char* key, double* so_far, double at, const char* kind, const std::string& what) {
        const double now = number_of(fields, key);
        for (; *so_far < now; *so_far += 1) events->push_back({at, node, kind, who + " " + what});
    };
    grow("checkpoints_saved", saved, last_saved >= 0 ? last_saved : step, "checkpoint",
         "saved a checkpoint" + (last_saved >= 0 ? " of step " + format("%.0f", last_saved) : std::string()));
    grow("checkpoints_failed", failed, step, "checkpoint failed", "failed to save a checkpoint");
    grow("checkpoints_skipped", skipped, step, "checkpoint skipped", "skipped a checkpoint (the last was still being written)");
}

std::vector<Event> events_of(const std::vector<NodeRun>& runs) {
    std::vector<Event> events;
    for (const NodeRun& run : runs) {
        const std::string who = "node " + std::to_string(run.node);
        double members = -1, recoveries = 0, saved = 0, failed = 0, skipped = 0;
        for (const Json& line : run.steps) {
            const double step = number_of(line, "outer_step");
            const double now = number_of(line, "members", -1);
            if (members >= 0 && now > members)
                events.push_back({step, run.node, "join", who + " sees " + format("%.0f", now - members) + " node(s) join: " +
                                                              format("%.0f", now) + " members"});
            if (members >= 0 && now >= 0 && now < members)
                events.push_back({step, run.node, "drop", who + " sees " + format("%.0f", members - now) + " node(s) leave: " +
                                                              format("%.0f", now) + " members"});
            if (now >= 0) members = now;
            if (const double r = number_of(line, "recoveries"); r > recoveries) {
                events.push_back({step, run.node, "recovery", who + " recovered its state from a peer"});
                recoveries = r;
            }
            if (line.contains("excluded_nodes") && line["excluded_nodes"].is_array() && !line["excluded_nodes"].empty())
                events.push_back({step, run.node, "excluded",
                                  who + "'s average left out the contributions of nodes " + to_json(line["excluded_nodes"])});
            // Saves end in the background: a line counts those that ended during its round, and
            // names the step of the last one saved.
            const double last_saved = number_of(line, "last_checkpoint", step);
            count_checkpoints(line, who, run.node, last_saved, step, &saved, &failed, &skipped, &events);
        }
        // The saves that ended after the last line (the final checkpoint), from the summary.
        if (run.summary && !run.steps.empty())
            count_checkpoints(*run.summary, who, run.node, number_of(*run.summary, "last_checkpoint", -1),
                              number_of(run.steps.back(), "outer_step"), &saved, &failed, &skipped, &events);
    }
    std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) { return a.step < b.step; });
    return events;
}

const char* event_color(const std::string& kind) {
    if (kind == "join") return "#2ca02c";
    if (kind == "drop") return "#d62728";
    if (kind == "recovery") return "#9467bd";
    if (kind == "excluded") return "#ff7f0e";
    if (kind == "checkpoint failed") return "#d62728";
    if (kind == "checkpoint skipped") return "#7f7f7f";
    return "#1f77b4";  // a saved checkpoint
}

// ---- the page -----------------------------------------------------------------------------------

std::string summary_table(const std::vector<NodeRun>& runs, std::vector<std::string>* warnings) {
    std::ostringstream html;
    html << "<table><thead><tr><th>node</th><th>state</th><th>outer steps</th><th>final loss</th><th>eval loss</th>"
            "<th>tokens</th><th>tokens/s</th><th>compute util.</th><th>all-reduce s</th><th>sent MiB</th>"
            "<th>checkpoints saved / failed / skipped</th><th>last checkpoint</th><th>recoveries</th><th>parameters</th>"
            "</tr></thead><tbody>\n";
    std::string first_hash;
    bool differ = false;
    const bool any_summary = std::any_of(runs.begin(), runs.end(), [](const NodeRun& run) { return run.summary.has_value(); });
    for (const NodeRun& run : runs) {
        // Every figure from the metrics lines, over the whole run as its metrics file holds it (a
        // resumed node appends to it), so that each has one scope; the end state from the summary.
        double tokens = 0, wall = 0, compute = 0, allreduce = 0, sent = 0;
        for (const Json& line : run.steps) {
            tokens += number_of(line, "tokens");
            wall += number_of(line, "wall_seconds");
            compute += number_of(line, "inner_seconds");
            allreduce += number_of(line, "allreduce_seconds");
            sent += number_of(line, "allreduce_bytes_sent");
        }
        const Json last = run.steps.empty() ? Json::object() : run.steps.back();
        std::string state = run.summary ? "done" : run.status ? json_string(*run.status, "state").value_or("?") : "no summary";
        const Json& end = run.summary ? *run.summary : last;
        const std::string hash = json_string(end, "params_hash").value_or("");
        if (run.summary) {
            if (first_hash.empty()) first_hash = hash;
            differ = differ || hash != first_hash;
        }
        const double saved = number_of(end, "checkpoints_saved"), failed = number_of(end, "checkpoints_failed"),
                     skipped = number_of(end, "checkpoints_skipped");
        const double last_checkpoint = number_of(end, "last_checkpoint", -1);
        if (failed > 0)
            warnings->push_back("node " + std::to_string(run.node) + " failed " + format("%.0f", failed) + " of " +
                                format("%.0f", saved + failed + skipped) + " checkpoint saves; its last good checkpoint is " +
                                (last_checkpoint >= 0 ? "step " + format("%.0f", last_checkpoint) : "none"));
        const double final_eval = run.summary ? number_of(*run.summary, "final_eval_loss", -1) : -1;
        html << "<tr" << (failed > 0 ? " class=\"bad\"" : "") << "><td>" << run.node << "</td><td>" << escape(state)
             << "</td><td>" << run.steps.size() << "</td><td>" << format("%.4f", number_of(end, run.summary ? "final_loss" : "loss"))
             << "</td><td>" << (final_eval >= 0 ? format("%.4f", final_eval) : "-") << "</td><td>" << format("%.0f", tokens)
             << "</td><td>" << (wall > 0 ? format("%.0f", tokens / wall) : "-") << "</td><td>"
             << (wall > 0 ? format("%.1f%%", 100 * compute / wall) : "-") << "</td><td>" << format("%.2f", allreduce)
             << "</td><td>" << format("%.1f", sent / 1048576.0) << "</td><td>" << format("%.0f", saved) << " / "
             << format("%.0f", failed) << " / " << format("%.0f", skipped) << "</td><td>"
             << (last_checkpoint >= 0 ? format("%.0f", last_checkpoint) : "-") << "</td><td>"
             << format("%.0f", number_of(end, "recoveries")) << "</td><td><code>" << escape(hash) << "</code></td></tr>\n";
        if (!run.summary && any_summary)  // the others have ended: this one stopped early
            warnings->push_back("node " + std::to_string(run.node) + " wrote no summary: it stopped after outer step " +
                                std::to_string(run.steps.size()) + " (its log, logs/node-" + std::to_string(run.node) +
                                ".log, says why)");
    }
    if (differ) warnings->push_back("the nodes' final parameters differ");
    html << "</tbody></table>\n";
    return html.str();
}

std::string page(const fs::path& run_dir, const std::vector<NodeRun>& runs) {
    std::vector<std::string> warnings;
    const std::string table = summary_table(runs, &warnings);
    const std::vector<Event> events = events_of(runs);
    std::vector<Marker> markers;
    for (const Event& e : events) markers.push_back({e.step, "step " + format("%.0f", e.step) + ": " + e.text, event_color(e.kind)});

    std::vector<Series> loss = per_node(runs, "loss");
    for (const NodeRun& run : runs) {
        Series eval{"node " + std::to_string(run.node) + " eval", kColors[run.node % 10], {}, true};
        for (const Json& step : run.steps)
            if (const auto value = json_number(step, "eval_loss")) eval.points.emplace_back(number_of(step, "outer_step"), *value);
        if (run.summary && !run.steps.empty())
            if (const double final_eval = number_of(*run.summary, "final_eval_loss", -1); final_eval >= 0)
                eval.points.emplace_back(number_of(run.steps.back(), "outer_step"), final_eval);
        if (!eval.points.empty()) loss.push_back(std::move(eval));
    }

    bool running = false;
    int64_t outer_steps = 0;
    for (const NodeRun& run : runs) {
        running = running || !run.summary;
        if (run.status) outer_steps = std::max<int64_t>(outer_steps, static_cast<int64_t>(number_of(*run.status, "outer_steps")));
    }
    const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    char when[64];
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));

    std::ostringstream html;
    html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>Pangea run "
         << escape(run_dir.filename().string()) << "</title>\n<style>\n"
         << "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}\n"
            "h1{font-size:20px}table{border-collapse:collapse;margin:12px 0;font-size:12px}td,th{border:1px solid #ccc;padding:3px 8px;"
            "text-align:right}th{background:#f3f3f3}tr.bad td{background:#fde8e8}.warn{background:#fff3cd;border:1px solid "
            "#e0c060;padding:8px 12px;margin:12px 0}figure{margin:10px 0}svg.chart{width:760px;height:250px}"
            ".title{font-weight:600;font-size:13px}.tick,.legend,.axis{font-size:11px;fill:#444}.grid{stroke:#eee}"
            ".frame{fill:none;stroke:#999}.marker{stroke-dasharray:3,3;stroke-width:1.2}ul.events{font-size:13px}\n"
         << "</style></head><body>\n<h1>Pangea run <code>" << escape(run_dir.string()) << "</code></h1>\n<p>"
         << runs.size() << " node" << (runs.size() == 1 ? "" : "s") << ", "
         << (running ? "in progress" : "finished") << (outer_steps > 0 ? ", " + std::to_string(outer_steps) + " outer steps" : "")
         << "; report written " << when << " by <code>pangea report</code>.</p>\n";
    for (const std::string& w : warnings) html << "<div class=\"warn\">&#9888; " << escape(w) << "</div>\n";
    html << table;
    html << "<h2>Over the run</h2>\n"
         << chart("loss", "loss (solid: training, the round's mean; dashed: held-out)", loss, markers, false)
         << chart("tokens", "tokens per second", per_node(runs, "tokens_per_s"), markers, true)
         << chart("utilization", "compute utilization (%)", per_node(runs, "compute_utilization", 100), markers, true)
         << chart("allreduce-seconds", "all-reduce seconds per step", per_node(runs, "allreduce_seconds"), markers, true)
         << chart("allreduce-bytes", "all-reduce MiB sent per step", per_node(runs, "allreduce_bytes_sent", 1.0 / 1048576),
                  markers, true)
         << chart("members", "members (vertical lines: joins, drops, recoveries, left-out contributions, checkpoints)",
                  per_node(runs, "members"), markers, true);
    html << "<h2>Events</h2>\n";
    if (events.empty()) html << "<p>none: no joins, drops, recoveries, left-out contributions or checkpoints</p>\n";
    else {
        html << "<ul class=\"events\">\n";
        for (const Event& e : events)
            html << "<li><span style=\"color:" << event_color(e.kind) << "\">&#9632;</span> step " << format("%.0f", e.step) << ": "
                 << escape(e.text) << "</li>\n";
        html << "</ul>\n";
    }
    html << "</body></html>\n";
    return html.str();
}

}  // namespace

fs::path write_run_report(const fs::path& run_dir, fs::path output) {
    const std::vector<NodeRun> runs = read_run(run_dir);
    if (runs.empty())
        throw ReportError(run_dir.string() + ": no metrics/node-<i>.jsonl: not a run directory, or no node has finished an outer step yet");
    if (output.empty()) output = run_dir / "report.html";
    const fs::path temporary = output.string() + ".tmp";
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        if (!out) throw ReportError(temporary.string() + ": cannot write");
        out << page(run_dir, runs);
        if (!out.flush()) throw ReportError(temporary.string() + ": write failed");
    }
    std::error_code error;
    fs::rename(temporary, output, error);
    if (error) throw ReportError(output.string() + ": cannot rename into place: " + error.message());
    return output;
}

}  // namespace pangea

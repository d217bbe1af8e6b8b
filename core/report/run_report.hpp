// `pangea report RUN_DIR`: one self-contained HTML page of a run (inline SVG, no script, nothing
// fetched), from the files its nodes write: metrics/node-<i>.jsonl (a line per outer step),
// summary/node-<i>.json (at the end) and status/node-<i>.json (while it runs). It can be written
// while the run goes on: a node's metrics line that is still being written is left out.
#pragma once

#include <filesystem>
#include <stdexcept>

namespace pangea {

class ReportError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Writes the report (through a temporary file renamed into place) to `output`, by default
// RUN_DIR/report.html, and returns its path. Throws ReportError when RUN_DIR holds no metrics.
std::filesystem::path write_run_report(const std::filesystem::path& run_dir, std::filesystem::path output = {});

}  // namespace pangea

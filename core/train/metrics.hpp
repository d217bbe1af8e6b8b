// Metrics a node writes into the run directory:
//   metrics/node-<i>.jsonl   one JSON object per outer step
//   status/node-<i>.json     where the node is right now (rewritten atomically, for `pangea launch`)
//   summary/node-<i>.json    totals at the end
// Field names are documented in docs/training.md.
#pragma once

#include <filesystem>
#include <string>

#include "common/json.hpp"

namespace pangea {

// Writes text to path through a temporary file and a rename: readers see all or nothing.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace pangea

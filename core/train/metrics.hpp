// Metrics a node writes into the run directory:
//   metrics/node-<i>.jsonl   one JSON object per outer step
//   status/node-<i>.json     where the node is right now (rewritten atomically, for `pangea launch`)
//   summary/node-<i>.json    totals at the end
// Field names are documented in docs/training.md.
#pragma once

#include "common/files.hpp"
#include "common/json.hpp"

// `pangea launch -n N MANIFEST`: N local nodes as child processes of this one. Each node's
// output goes to <run.dir>/logs/node-<i>.log; this process shows their combined progress (from
// <run.dir>/status/), forwards Ctrl-C, stops the others when one fails, and prints the result.
#pragma once

#include <string>
#include <vector>

namespace pangea {

struct Manifest;

struct LaunchOptions {
    int nodes = 0;                           // 0: [mesh] nodes
    std::string manifest_path;
    std::vector<std::string> set_arguments;  // passed on to every node
    // For emulated networks (bench/wan.sh): node i runs in network namespace <netns><i + 1>,
    // and listens on `host` with {r} replaced by i + 1 (e.g. 10.77.0.{r}).
    std::string netns;
    std::string host;
    std::string resume;  // passed on to every node: "latest" or an outer step
    bool fresh = false;  // passed on to every node: delete the run's checkpoints and start afresh
};

// The status of a run that trained to the end, every node agreeing, while some checkpoint saves
// failed (the end table names the nodes and their last good checkpoint).
constexpr int kCheckpointsFailed = 3;

// Returns 0 when every node succeeded, 1 when one failed (or their parameters differ),
// kCheckpointsFailed, or 130 when interrupted.
int launch_local(const Manifest& manifest, const LaunchOptions& options);

}  // namespace pangea

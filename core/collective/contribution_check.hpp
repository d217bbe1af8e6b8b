// The check of each member's pseudo-gradient before it is averaged (docs/security.md): a node
// whose contribution is NaN/Inf, or whose norm is far above the others', is left out of that
// outer step instead of poisoning every member's model.
//
// The members all-gather their norms around the ring (n - 1 hops of 16 bytes) and each decides
// with the same rule on the same numbers, so all of them leave out the same nodes. This guards
// against a broken or diverged node, not against a malicious one: a ring member relays the
// others' partial sums and could alter them (see docs/security.md, "not yet defended against").
#pragma once

#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "collective/link.hpp"

namespace pangea {

// The L2 norm in double precision; NaN when any value is NaN or Inf.
double contribution_norm(std::span<const float> values);

// Ring all-gather of one norm per rank: returns the norms by ring position. Throws
// ContributionCheckError (after aborting both links, so the neighbours fail fast too) when a
// peer fails, stalls past `timeout_ms` or sends a malformed message.
std::vector<double> gather_norms(const Link& next, const Link& previous, int position, int world, double own,
                                 int timeout_ms);

// Ring positions whose norm is NaN/Inf or negative, or above `factor` times the lower median of the finite
// norms (when that median is positive; factor 0 checks NaN/Inf only). The lower median keeps two
// members apart too: of {1, 50}, 50 is left out.
std::vector<int> outlier_positions(std::span<const double> norms, double factor);

// "norm 3.2e+09, over 10x the median 1.1e+00" or "norm nan": why a position was left out.
std::string outlier_reason(std::span<const double> norms, int position, double factor);

struct ContributionCheckError : std::runtime_error {
    ContributionCheckError(pangea_status status, const std::string& what) : std::runtime_error(what), status(status) {}
    pangea_status status;
};

}  // namespace pangea

// How a flat buffer of `count` values is cut into equal parts: the model's shards among a node's
// workers (model/sharded.hpp), the outer state's, and the ranges of [mesh] rings. With rings a
// multiple of the workers, each ring's range lies inside one worker's shard (the cut points of
// W parts are among those of R = m W parts), so nodes of different W meet range by range.
#pragma once

#include <cstddef>

namespace pangea {

struct ShardRange {
    size_t begin = 0, end = 0;
    size_t size() const { return end - begin; }
};

// Part k of `parts`: [count k / parts, count (k + 1) / parts).
inline ShardRange shard_range(size_t count, int parts, int k) {
    return {count * static_cast<size_t>(k) / static_cast<size_t>(parts),
            count * static_cast<size_t>(k + 1) / static_cast<size_t>(parts)};
}

}  // namespace pangea

// The parameters' hash over pieces (a node's workers' shards, each hashed as it comes) is the
// hash of the whole buffer, wherever the pieces split it.
#include "common/float_hash.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace pangea {
namespace {

TEST(FloatHash, PiecesInOrderHashAsTheWholeBuffer) {
    std::vector<float> values(1001);
    for (size_t i = 0; i < values.size(); ++i) values[i] = 0.25f * float(i) - 3.0f;
    const std::string whole = hash_floats(values.data(), values.size());
    EXPECT_EQ(whole.size(), 16u);
    for (const size_t a : {size_t{0}, size_t{1}, size_t{333}, size_t{500}}) {
        for (const size_t b : {a, a + 1, size_t{777}, values.size()}) {
            if (b < a) continue;
            FloatHash pieces(values.size());
            const std::span<const float> all(values);
            pieces.add(all.subspan(0, a));
            pieces.add(all.subspan(a, b - a));
            pieces.add(all.subspan(b));
            EXPECT_EQ(pieces.hex(), whole) << "split at " << a << " and " << b;
        }
    }
    values[500] = 1.0f + values[500];
    EXPECT_NE(hash_floats(values.data(), values.size()), whole);
}

}  // namespace
}  // namespace pangea

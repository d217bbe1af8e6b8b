// A 64-bit hash of a float buffer's bytes, printed as 16 hex digits: what nodes compare to show
// they hold bit-identical parameters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace pangea {

std::string hash_floats(const float* values, size_t count);

// The same hash over a buffer that comes in pieces (a node's workers' shards, in order): the
// pieces of `count` values in all, add()ed in order, hash as the whole buffer would.
class FloatHash {
public:
    explicit FloatHash(size_t count);
    void add(std::span<const float> values);
    std::string hex() const;  // once every value is in

private:
    void word(uint64_t w);
    uint64_t h_;
    unsigned char pending_[8] = {};  // bytes of a word not yet whole
    size_t pending_bytes_ = 0;
};

}  // namespace pangea

#include "common/crc32.hpp"

#include <array>

namespace pangea {
namespace {

// Slicing by 4: four table lookups per 4 bytes, ~1 GB/s, well above any WAN link.
std::array<std::array<uint32_t, 256>, 4> make_tables() {
    std::array<std::array<uint32_t, 256>, 4> t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
        for (int s = 1; s < 4; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    return t;
}

const auto kTables = make_tables();

}  // namespace

uint32_t crc32(const void* data, size_t bytes, uint32_t previous) {
    const auto* p = static_cast<const unsigned char*>(data);
    uint32_t c = ~previous;
    for (; bytes >= 4; bytes -= 4, p += 4) {
        c ^= uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
        c = kTables[3][c & 0xff] ^ kTables[2][(c >> 8) & 0xff] ^ kTables[1][(c >> 16) & 0xff] ^ kTables[0][c >> 24];
    }
    for (; bytes > 0; --bytes) c = kTables[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

}  // namespace pangea

// CRC-32 (the IEEE polynomial, as zlib and PNG use it), continued across pieces:
// crc32(b, crc32(a)) == crc32(a + b).
#pragma once

#include <cstddef>
#include <cstdint>

namespace pangea {

uint32_t crc32(const void* data, size_t bytes, uint32_t previous = 0);

}  // namespace pangea

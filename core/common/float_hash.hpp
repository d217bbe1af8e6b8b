// A 64-bit hash of a float buffer's bytes, printed as 16 hex digits: what nodes compare to show
// they hold bit-identical parameters.
#pragma once

#include <cstddef>
#include <string>

namespace pangea {

std::string hash_floats(const float* values, size_t count);

}  // namespace pangea

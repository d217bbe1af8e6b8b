// The names a shared library exports: the defined, global or weak symbols of its ELF .dynsym.
// Read from the file with <elf.h> alone, so the conformance runner needs no library for it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace pangea::conformance {

// Throws std::runtime_error naming the file and what is wrong with it (not ELF64, truncated).
std::vector<std::string> exported_symbols(const std::filesystem::path& library);

}  // namespace pangea::conformance

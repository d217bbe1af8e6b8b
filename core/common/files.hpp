// Small files other processes read while they are being replaced (status, summaries, the
// coordinator's address): written whole or not at all.
#pragma once

#include <filesystem>
#include <string>

namespace pangea {

// Writes text and a newline to path through a temporary file and a rename: readers see all or
// nothing. Best effort: a full disk must not stop training, so failures are ignored.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace pangea

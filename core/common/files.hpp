// Small files other processes read while they are being replaced (status, summaries, the
// coordinator's address): written whole or not at all.
#pragma once

#include <filesystem>
#include <string>

namespace pangea {

// Writes text and a newline to path: into a temporary file in the same directory, synced, then
// renamed over path and the directory synced, so that readers (and a crash) see all or nothing.
// Throws std::system_error naming the path and the system's reason for any failure, and leaves
// no temporary file behind.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace pangea

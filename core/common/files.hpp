// Small files other processes read while they are being replaced (status, summaries, the
// coordinator's address): written whole or not at all.
#pragma once

#include <filesystem>
#include <string>

namespace pangea {

// Whether write_file_atomically() waits for the disk: kDurable survives a crash of the machine;
// kReadersOnly is for a file rewritten all the time (a status), where readers must see all or
// nothing but the next rewrite replaces what a crash would lose anyway.
enum class Durability { kDurable, kReadersOnly };

// Writes text and a newline to path: into a temporary file in the same directory, synced (with
// kDurable), then renamed over path and the directory synced (kDurable), so that readers (and
// with kDurable a crash) see all or nothing. Throws std::system_error naming the path and the
// system's reason for any failure, and leaves no temporary file behind.
void write_file_atomically(const std::filesystem::path& path, const std::string& text,
                           Durability durability = Durability::kDurable);

// A fresh directory of this process's own in the system's temporary directory (mkdtemp), removed
// with all it holds when this goes. Throws std::system_error naming the path and why. It names
// its owner (a file .owner: the process id and start time), so that one left behind by a process
// killed outright (SIGKILL runs no destructor) is removed by the next one of the same prefix on
// this machine; a directory whose owner still runs is left alone.
class TemporaryDirectory {
public:
    explicit TemporaryDirectory(const std::string& prefix);
    ~TemporaryDirectory();
    TemporaryDirectory(const TemporaryDirectory&) = delete;
    TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

}  // namespace pangea

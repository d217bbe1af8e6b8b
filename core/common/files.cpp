#include "common/files.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

namespace pangea {
namespace {

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& path, int error) {
    throw std::system_error(error, std::generic_category(), what + " " + path.string());
}

// Closes on scope exit (errors of an explicit close are checked by the caller).
struct FdCloser {
    int fd;
    ~FdCloser() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

void write_file_atomically(const std::filesystem::path& path, const std::string& text, Durability durability) {
    static std::atomic<unsigned> counter{0};
    // Unique per process and call: concurrent writers never share a temporary file.
    const std::filesystem::path temporary =
        path.string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    const std::filesystem::path directory = path.has_parent_path() ? path.parent_path() : ".";
    FdCloser file{::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666)};
    if (file.fd < 0) fail("cannot create", temporary, errno);
    try {
        const std::string data = text + "\n";
        for (size_t done = 0; done < data.size();) {
            const ssize_t n = ::write(file.fd, data.data() + done, data.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) fail("cannot write", temporary, errno);
            done += static_cast<size_t>(n);
        }
        if (durability == Durability::kDurable && ::fsync(file.fd) != 0) fail("cannot sync", temporary, errno);
        const int fd = std::exchange(file.fd, -1);
        if (::close(fd) != 0) fail("cannot close", temporary, errno);
        if (::rename(temporary.c_str(), path.c_str()) != 0) fail("cannot rename " + temporary.string() + " to", path, errno);
    } catch (...) {
        ::unlink(temporary.c_str());
        throw;
    }
    if (durability != Durability::kDurable) return;
    // The rename is durable once the directory is.
    FdCloser dir{::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (dir.fd < 0) fail("cannot open the directory", directory, errno);
    if (::fsync(dir.fd) != 0) fail("cannot sync the directory", directory, errno);
}

namespace {

// A process as "pid start-time" (the start time in clock ticks since boot, /proc/PID/stat field
// 22: a pid the system reuses has another); empty when there is no such process.
std::string process_identity(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(stat, text)) return "";
    const size_t name_end = text.rfind(')');  // (the command name may hold spaces)
    if (name_end == std::string::npos) return "";
    std::istringstream fields(text.substr(name_end + 2));
    std::string field;
    for (int i = 3; i <= 22 && fields >> field; ++i)
        if (i == 22) return std::to_string(pid) + " " + field;
    return "";
}

// Removes the directories of `prefix` in `parent` whose owner process is gone.
void remove_abandoned(const std::filesystem::path& parent, const std::string& prefix) {
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(parent, error)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind(prefix, 0) != 0 || name.size() != prefix.size() + 6 || !entry.is_directory(error)) continue;
        std::ifstream owner_file(entry.path() / ".owner");
        std::string owner;
        if (!std::getline(owner_file, owner)) continue;  // not one of ours, or still being made
        pid_t pid = 0;
        try {
            pid = static_cast<pid_t>(std::stol(owner));
        } catch (const std::exception&) {
            continue;
        }
        if (pid > 0 && process_identity(pid) != owner) std::filesystem::remove_all(entry.path(), error);
    }
}

}  // namespace

TemporaryDirectory::TemporaryDirectory(const std::string& prefix) {
    const std::filesystem::path parent = std::filesystem::temp_directory_path();
    remove_abandoned(parent, prefix);
    std::string pattern = (parent / (prefix + "XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr)
        throw std::system_error(errno, std::generic_category(), "cannot make a directory like " + pattern);
    path_ = pattern;
    std::ofstream(path_ / ".owner") << process_identity(::getpid()) << "\n";
}

TemporaryDirectory::~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

}  // namespace pangea

// storage/local: checkpoint objects as files under a directory. A write goes to a temporary
// file in <path>/.partial/, is fsynced, renamed into place and the directory fsynced, so an
// object is visible whole or not at all, also across a crash or power loss.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "pangea/sdk.hpp"

struct pangea_storage_writer {
    int fd = -1;
    std::string temporary;
    std::string key;
};

namespace {

namespace fs = std::filesystem;
using pangea::sdk::Error;

constexpr const char* kPartial = ".partial";

// The status of a failed system call that wrote: a full disk or quota is its own status.
pangea_status write_status(int error) {
    return error == ENOSPC || error == EDQUOT ? PANGEA_ERR_NO_SPACE : PANGEA_ERR_IO;
}

std::string system_error(const std::string& what, const std::string& path) {
    return what + " " + path + ": " + std::strerror(errno);
}

// Keys are relative paths of plain names: nothing may escape the directory or hide in it.
void check_key(const std::string& key) {
    const auto bad = [&](const std::string& why) {
        throw Error(PANGEA_ERR_INVALID_ARGUMENT, "key '" + key + "': " + why);
    };
    if (key.empty()) bad("empty");
    if (key.front() == '/' || key.back() == '/') bad("must not start or end with '/'");
    size_t start = 0;
    while (start <= key.size()) {
        const size_t end = std::min(key.find('/', start), key.size());
        const std::string part = key.substr(start, end - start);
        if (part.empty() || part == "." || part == "..") bad("has an empty, '.' or '..' component");
        if (part.front() == '.') bad("a component starts with '.' (reserved)");
        start = end + 1;
    }
    for (unsigned char c : key)
        if (c < 0x20 || c == 0x7f || c == '\\') bad("has a control character or backslash");
}

void fsync_directory(const fs::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd < 0) throw Error(PANGEA_ERR_IO, system_error("cannot open directory", dir));
    const int rc = ::fsync(fd);
    ::close(fd);
    if (rc != 0) throw Error(write_status(errno), system_error("cannot fsync directory", dir));
}

class Local final : public pangea::sdk::Storage {
public:
    static constexpr const char* name = "local";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description = "objects as files under a directory (atomic rename, fsync)";
    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            string_setting("path", nullptr, "the directory (created if missing)"),
            bool_setting("fsync", "true", "fsync files and directories on commit (off: faster, not crash safe)"),
        };
    }

    explicit Local(const pangea::sdk::Host& host) : root_(host.get_string("path")), fsync_(host.get_bool("fsync")) {
        std::error_code error;
        fs::create_directories(root_ / kPartial, error);
        if (error)
            throw Error(PANGEA_ERR_IO, "cannot create " + (root_ / kPartial).string() + ": " + error.message());
        remove_orphans();
    }

    pangea_storage_writer* open_write(const char* key) override {
        check_key(key);
        auto writer = std::make_unique<pangea_storage_writer>();
        writer->key = key;
        writer->temporary = (root_ / kPartial /
                             (std::to_string(::getpid()) + "-" + std::to_string(next_writer_++))).string();
        writer->fd = ::open(writer->temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (writer->fd < 0) throw Error(write_status(errno), system_error("cannot create", writer->temporary));
        return writer.release();
    }

    void write(pangea_storage_writer* writer, const void* data, size_t bytes) override {
#ifdef PANGEA_LOCAL_TEST_WRITE_DELAY_MS
        // tests/ builds a slow copy of this plugin, so that a test can kill a save halfway.
        std::this_thread::sleep_for(std::chrono::milliseconds(PANGEA_LOCAL_TEST_WRITE_DELAY_MS));
#endif
        const auto* p = static_cast<const char*>(data);
        while (bytes > 0) {
            const ssize_t n = ::write(writer->fd, p, bytes);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw Error(write_status(errno),
                                   system_error("cannot write", writer->temporary) + " (object " + writer->key + ")");
            p += n;
            bytes -= static_cast<size_t>(n);
        }
    }

    void commit(pangea_storage_writer* writer) override {
        std::unique_ptr<pangea_storage_writer> owned(writer);
        const fs::path target = root_ / owned->key;
        try {
            if (fsync_ && ::fsync(owned->fd) != 0) throw Error(write_status(errno), system_error("cannot fsync", owned->temporary));
            if (::close(std::exchange(owned->fd, -1)) != 0)
                throw Error(write_status(errno), system_error("cannot close", owned->temporary));
            std::error_code error;
            fs::create_directories(target.parent_path(), error);
            if (error)
                throw Error(write_status(error.value()), "cannot create " + target.parent_path().string() + ": " + error.message());
            if (::rename(owned->temporary.c_str(), target.c_str()) != 0)
                throw Error(PANGEA_ERR_IO, system_error("cannot rename " + owned->temporary + " to", target));
            if (fsync_) {
                // The new name, and any directories made for it, must survive a crash too.
                for (fs::path dir = target.parent_path();; dir = dir.parent_path()) {
                    fsync_directory(dir);
                    if (dir == root_ || !dir.has_parent_path() || dir.parent_path() == dir) break;
                }
            }
        } catch (...) {
            discard(*owned);
            throw;
        }
    }

    void abort(pangea_storage_writer* writer) noexcept override {
        std::unique_ptr<pangea_storage_writer> owned(writer);
        discard(*owned);
    }

    size_t read(const char* key, uint64_t offset, void* dst, size_t bytes) override {
        check_key(key);
        const fs::path path = root_ / key;
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw missing_or_io("cannot open", path, key);
        size_t done = 0;
        while (done < bytes) {
            const ssize_t n = ::pread(fd, static_cast<char*>(dst) + done, bytes - done, static_cast<off_t>(offset + done));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                const std::string message = system_error("cannot read", path);
                ::close(fd);
                throw Error(PANGEA_ERR_IO, message);
            }
            if (n == 0) break;
            done += static_cast<size_t>(n);
        }
        ::close(fd);
        return done;
    }

    uint64_t stat(const char* key) override {
        check_key(key);
        const fs::path path = root_ / key;
        struct stat info{};
        if (::stat(path.c_str(), &info) != 0) throw missing_or_io("cannot stat", path, key);
        if (!S_ISREG(info.st_mode)) throw Error(PANGEA_ERR_NOT_FOUND, "no object " + std::string(key) + " (a directory)");
        return static_cast<uint64_t>(info.st_size);
    }

    void list(const char* prefix, pangea_storage_list_fn fn, void* user) override {
        const std::string wanted = prefix;
        // Walk only the directory the prefix lies in.
        const size_t slash = wanted.rfind('/');
        const fs::path start = slash == std::string::npos ? root_ : root_ / wanted.substr(0, slash);
        std::vector<std::pair<std::string, uint64_t>> found;
        std::error_code error;
        if (!fs::is_directory(start, error)) return;
        for (auto it = fs::recursive_directory_iterator(start, error); !error && it != fs::recursive_directory_iterator();
             it.increment(error)) {
            const std::string key = fs::relative(it->path(), root_).generic_string();
            if (it->is_directory()) {
                if (it->path().filename().string().front() == '.') it.disable_recursion_pending();
                continue;
            }
            if (key.compare(0, wanted.size(), wanted) != 0 || it->path().filename().string().front() == '.') continue;
            std::error_code size_error;
            const uint64_t size = it->file_size(size_error);
            if (!size_error) found.emplace_back(key, size);
        }
        if (error) throw Error(PANGEA_ERR_IO, "cannot list " + start.string() + ": " + error.message());
        std::sort(found.begin(), found.end());
        for (const auto& [key, size] : found)
            if (fn(user, key.c_str(), size) != 0) break;
    }

    void remove(const char* key) override {
        check_key(key);
        const fs::path path = root_ / key;
        if (::unlink(path.c_str()) != 0) throw missing_or_io("cannot remove", path, key);
        // Empty directories left behind go too (a deleted checkpoint leaves nothing).
        for (fs::path dir = path.parent_path(); dir != root_ && dir.has_parent_path(); dir = dir.parent_path())
            if (::rmdir(dir.c_str()) != 0) break;
    }

private:
    Error missing_or_io(const char* what, const fs::path& path, const char* key) const {
        if (errno == ENOENT || errno == ENOTDIR) return Error(PANGEA_ERR_NOT_FOUND, "no object " + std::string(key) + " in " + root_.string());
        return Error(PANGEA_ERR_IO, system_error(what, path));
    }

    static void discard(pangea_storage_writer& writer) noexcept {
        if (writer.fd >= 0) ::close(writer.fd);
        writer.fd = -1;
        ::unlink(writer.temporary.c_str());
    }

    // Temporary files of writers whose process is gone (killed mid-save).
    void remove_orphans() {
        std::error_code error;
        for (const auto& entry : fs::directory_iterator(root_ / kPartial, error)) {
            const std::string name = entry.path().filename().string();
            const pid_t pid = static_cast<pid_t>(std::atol(name.c_str()));
            if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) fs::remove(entry.path(), error);
        }
    }

    fs::path root_;
    bool fsync_;
    std::atomic<uint64_t> next_writer_{0};
};

}  // namespace

PANGEA_EXPORT_PLUGINS(Local)

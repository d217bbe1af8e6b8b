// core/common/files: write_file_atomically replaces a file whole, syncs it, and reports failures;
// a TemporaryDirectory is fresh and goes with all it holds.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <system_error>

#include "common/files.hpp"

namespace pangea {
namespace {

namespace fs = std::filesystem;

// What write_file_atomically(path) throws ("" when it does not), as a user who may not write
// where root may: as root, from a child process that became nobody.
std::string error_writing(const fs::path& path, const std::string& text) {
    const auto attempt = [&]() -> std::string {
        try {
            write_file_atomically(path, text);
            return "";
        } catch (const std::system_error& e) {
            return e.what();
        }
    };
    if (::geteuid() != 0) return attempt();
    int out[2];
    if (::pipe(out) != 0) return "pipe failed";
    const pid_t child = ::fork();
    if (child == 0) {
        ::close(out[0]);
        const std::string what = ::setgid(65534) == 0 && ::setuid(65534) == 0 ? attempt() : "setuid failed";
        (void)!::write(out[1], what.data(), what.size());
        ::_exit(0);
    }
    ::close(out[1]);
    std::string what;
    char buffer[512];
    for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) > 0;) what.append(buffer, static_cast<size_t>(n));
    ::close(out[0]);
    ::waitpid(child, nullptr, 0);
    return what;
}

class Files : public ::testing::Test {
protected:
    fs::path dir = fs::temp_directory_path() / ("pangea-files-test-" + std::to_string(::getpid()));
    void SetUp() override { fs::create_directories(dir); }
    void TearDown() override {
        fs::permissions(dir, fs::perms::owner_all, fs::perm_options::add);
        fs::remove_all(dir);
    }
    std::string read(const fs::path& path) {
        std::ifstream in(path);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
    size_t entries() { return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator())); }
};

TEST_F(Files, ReplacesTheFileWholeAndLeavesNothingElse) {
    for (const Durability durability : {Durability::kDurable, Durability::kReadersOnly}) {
        write_file_atomically(dir / "status.json", "first", durability);
        write_file_atomically(dir / "status.json", "second", durability);
        EXPECT_EQ(read(dir / "status.json"), "second\n");
        EXPECT_EQ(entries(), 1u) << "no temporary file left";
    }
}

TEST_F(Files, AnUnwritableDirectoryIsReportedWithThePathAndLeavesNoTemporaryFile) {
    write_file_atomically(dir / "status.json", "old");
    fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::others_read | fs::perms::others_exec);
    const std::string what = error_writing(dir / "status.json", "new");
    EXPECT_NE(what.find((dir / "status.json").string()), std::string::npos) << what;
    EXPECT_NE(what.find("Permission denied"), std::string::npos) << what;
    fs::permissions(dir, fs::perms::owner_all);
    EXPECT_EQ(read(dir / "status.json"), "old\n") << "the old file stays whole";
    EXPECT_EQ(entries(), 1u) << "no temporary file left";
}

TEST_F(Files, AMissingDirectoryOrARenameOntoADirectoryIsReported) {
    EXPECT_THROW(write_file_atomically(dir / "absent" / "status.json", "x"), std::system_error);
    fs::create_directories(dir / "taken" / "inside");
    try {
        write_file_atomically(dir / "taken", "x");  // rename() cannot replace a non-empty directory
        FAIL() << "no error";
    } catch (const std::system_error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot rename"), std::string::npos) << e.what();
    }
    EXPECT_EQ(entries(), 1u) << "the temporary file of the failed rename is removed";
}

TEST(TemporaryDirectories, AreFreshAndGoWithWhatTheyHold) {
    fs::path kept;
    {
        const TemporaryDirectory first("pangea-test-"), second("pangea-test-");
        ASSERT_TRUE(fs::is_directory(first.path()));
        EXPECT_NE(first.path(), second.path());
        EXPECT_EQ(first.path().filename().string().rfind("pangea-test-", 0), 0u) << first.path();
        fs::create_directories(first.path() / "inside");
        std::ofstream(first.path() / "inside" / "file") << "x";
        kept = first.path();
    }
    EXPECT_FALSE(fs::exists(kept));
}

// A process killed outright leaves its directory: the next one of the prefix removes it, and only
// it (not one whose owner runs, not one that is not ours).
TEST(TemporaryDirectories, OneLeftByAKilledOwnerGoesWithTheNextOfItsPrefix) {
    const std::string prefix = "pangea-abandoned-" + std::to_string(::getpid()) + "-";
    const TemporaryDirectory running(prefix);
    fs::path abandoned;
    const pid_t child = ::fork();
    if (child == 0) {  // makes one and dies without its destructor, as SIGKILL would
        const TemporaryDirectory left(prefix);
        std::ofstream(fs::temp_directory_path() / (prefix + "path")) << left.path().string();
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    std::string left_path;
    std::getline(std::ifstream(fs::temp_directory_path() / (prefix + "path")), left_path);
    fs::remove(fs::temp_directory_path() / (prefix + "path"));
    abandoned = left_path;
    ASSERT_TRUE(fs::is_directory(abandoned));
    const fs::path foreign = fs::temp_directory_path() / (prefix + "zzzzzz");
    fs::create_directories(foreign);  // no .owner: not one of ours
    {
        const TemporaryDirectory next(prefix);
        EXPECT_FALSE(fs::exists(abandoned)) << "the killed owner's directory is still there";
        EXPECT_TRUE(fs::is_directory(running.path())) << "a running owner's directory went";
        EXPECT_TRUE(fs::is_directory(foreign)) << "a directory without an owner went";
    }
    fs::remove_all(foreign);
}

}  // namespace
}  // namespace pangea

// Token shards and the sampler: the on-disk format round-trips and rejects damage; nodes read
// disjoint, reproducible parts; the read position restores; mixing follows the weights; held-out
// windows never reach training.
#include "data/sampler.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "data/corpus.hpp"
#include "data/token_shard.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

using ::testing::HasSubstr;

class TempDir {
public:
    TempDir() {
        char pattern[] = "/tmp/pangea-data-XXXXXX";
        path_ = ::mkdtemp(pattern);
    }
    ~TempDir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

// Shard whose token i is i (so a window's first token names the window).
fs::path counting_shard(const TempDir& dir, const std::string& name, uint32_t count, uint32_t width = 4) {
    std::vector<uint32_t> tokens(count);
    for (uint32_t i = 0; i < count; ++i) tokens[i] = width == 2 ? i % 60000 : i;
    const fs::path path = dir.path() / name;
    write_token_shard(path, tokens, 0, width);
    return path;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const DataError& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(TokenShard, RoundTripsBothWidths) {
    TempDir dir;
    for (uint32_t width : {2u, 4u}) {
        const std::vector<uint32_t> tokens = {0, 1, 256, 65535, 7};
        write_token_shard(dir.path() / "a.tok", tokens, 65536, width);
        const TokenShard shard(dir.path() / "a.tok");
        EXPECT_EQ(shard.size(), 5u);
        EXPECT_EQ(shard.token_bytes(), width);
        std::vector<int32_t> out(4);
        shard.read(1, out);
        EXPECT_EQ(out, (std::vector<int32_t>{1, 256, 65535, 7}));
    }
}

TEST(TokenShard, RejectsDamageWithTheReason) {
    TempDir dir;
    const fs::path good = counting_shard(dir, "good.tok", 100);
    fs::resize_file(good, fs::file_size(good) - 3);
    EXPECT_THAT(error_of([&] { TokenShard s(good); }), HasSubstr("header says 100 tokens of 4 bytes, but the file holds 397"));
    std::ofstream(dir.path() / "text.tok") << "hello, this is not a shard at all!!";
    EXPECT_THAT(error_of([&] { TokenShard s(dir.path() / "text.tok"); }), HasSubstr("no PGTOKENS magic"));
    EXPECT_THAT(error_of([&] { TokenShard s(dir.path() / "none.tok"); }), HasSubstr("cannot open token shard"));
    // A token outside the recorded vocabulary is caught when read.
    write_token_shard(dir.path() / "vocab.tok", std::vector<uint32_t>{1, 2, 900}, 300, 2);
    std::vector<int32_t> out(3);
    EXPECT_THAT(error_of([&] { TokenShard(dir.path() / "vocab.tok").read(0, out); }),
                HasSubstr("token 900 at index 2 is outside the recorded vocabulary of 300"));
}

TEST(Sampler, NodesReadDisjointPartsAndNeverHeldOutWindows) {
    TempDir dir;
    const int64_t seq_len = 9;  // windows of 10 tokens: window w starts with token 10 w
    const uint32_t windows = 2000;
    const std::vector<DataSource> sources = {{counting_shard(dir, "a.tok", windows * 10).string(), 1, "test"}};
    std::set<int32_t> seen;
    const int nodes = 3;
    const size_t train_windows = windows - windows / 20;
    std::vector<int32_t> window(10);
    for (int node = 0; node < nodes; ++node) {
        Sampler sampler(sources, seq_len, 11, node, nodes);
        for (size_t i = 0; i < train_windows / nodes; ++i) {
            sampler.next(window);
            EXPECT_EQ(window[0] % 10, 0);
            EXPECT_NE(window[0] / 10 % 20, 19) << "held-out window " << window[0] / 10 << " used for training";
            EXPECT_TRUE(seen.insert(window[0]).second) << "window " << window[0] / 10 << " read twice";
        }
    }
    EXPECT_EQ(seen.size(), train_windows / nodes * nodes);
}

TEST(Sampler, SameSeedSameOrderAndStateRestores) {
    const std::vector<DataSource> sources = default_data_sources();
    Sampler a(sources, 32, 5, 1, 4), b(sources, 32, 5, 1, 4), c(sources, 32, 6, 1, 4);
    std::vector<int32_t> x(33 * 8), y(33 * 8), z(33 * 8);
    a.next(x);
    b.next(y);
    c.next(z);
    EXPECT_EQ(x, y);
    EXPECT_NE(x, z);
    const SamplerState saved = a.state();
    a.next(x);
    Sampler resumed(sources, 32, 5, 1, 4);
    resumed.restore(saved);
    resumed.next(y);
    EXPECT_EQ(x, y);
    SamplerState wrong = saved;
    wrong.per_source.pop_back();
    EXPECT_THAT(error_of([&] { resumed.restore(wrong); }), HasSubstr("has 3 sources, the manifest 4"));
}

TEST(Sampler, MixesSourcesByWeight) {
    TempDir dir;
    // Source A's tokens are < 100000, source B's >= 100000 (4-byte tokens).
    std::vector<uint32_t> a(20000), b(20000);
    for (uint32_t i = 0; i < 20000; ++i) a[i] = i, b[i] = 100000 + i;
    write_token_shard(dir.path() / "a.tok", a, 0, 4);
    write_token_shard(dir.path() / "b.tok", b, 0, 4);
    Sampler sampler({{(dir.path() / "a.tok").string(), 3, "t"}, {(dir.path() / "b.tok").string(), 1, "t"}}, 15, 1, 0, 1);
    std::vector<int32_t> window(16);
    int from_a = 0;
    for (int i = 0; i < 4000; ++i) {
        sampler.next(window);
        from_a += window[0] < 100000;
    }
    EXPECT_NEAR(from_a / 4000.0, 0.75, 0.03);
    EXPECT_EQ(sampler.state().per_source[0], static_cast<uint64_t>(from_a));
}

TEST(Sampler, DirectoriesAndBadSourcesAreNamed) {
    TempDir dir;
    fs::create_directories(dir.path() / "shards");
    EXPECT_THAT(error_of([&] { Sampler({{(dir.path() / "shards").string(), 1, "run.toml:3:1"}}, 16, 0, 0, 1); }),
                HasSubstr("run.toml:3:1: [[data.sources]] path \"" + (dir.path() / "shards").string() +
                          "\": the directory holds no *.tok shards"));
    counting_shard(dir, "shards/b.tok", 300, 2);
    counting_shard(dir, "shards/a.tok", 300, 2);
    EXPECT_THAT(error_of([&] { Sampler({{(dir.path() / "shards").string(), 1, "x"}}, 63, 0, 0, 1); }),
                HasSubstr("600 tokens is too little for seq_len 63: a source needs at least 1280"));
    Sampler two_shards({{(dir.path() / "shards").string(), 1, "x"}}, 9, 0, 0, 1);
    std::vector<int32_t> held(10);
    two_shards.held_out(0, held);  // window 19 spans tokens 190..199 of shard a
    EXPECT_EQ(held[0], 190);
    two_shards.held_out(1, held);  // window 39 spans tokens 390..399: 90..99 of shard b
    EXPECT_EQ(held[0], 90);
    EXPECT_THAT(error_of([&] { Sampler({{"builtin:poetry", 1, "x"}}, 16, 0, 0, 1); }),
                HasSubstr("unknown built-in corpus source 'poetry'"));
    EXPECT_THAT(error_of([&] { Sampler({{"builtin:prose", 0, "x"}}, 16, 0, 0, 1); }), HasSubstr("sum to 0"));
}

TEST(Corpus, BuiltinTextIsFixedAndTokenizesToBytes) {
    EXPECT_EQ(builtin_text("arithmetic", 4096), builtin_text("arithmetic", 4096));
    EXPECT_NE(builtin_text("prose", 4096), builtin_text("code", 4096));
    std::vector<uint32_t> tokens;
    byte_tokenize("hi", &tokens);
    EXPECT_EQ(tokens, (std::vector<uint32_t>{'h', 'i', kDocumentEnd}));
}

}  // namespace
}  // namespace pangea

// core/data: the token-shard reader (TokenShard), and the sampler that reads training and
// held-out windows out of shards.
//
// Input: a first byte (bit 0: two shards in a directory instead of one file; the next two bytes
// then say where the input is cut in two; bits 1-3: seq_len 8..15), then the shard bytes.
// Properties: a shard either opens or throws DataError; every token read from it is an int32
// >= 0 inside its recorded vocabulary, if it records one (else DataError); a sampler over it
// draws such windows or throws DataError.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "data/sampler.hpp"
#include "data/token_shard.hpp"
#include "fuzz_support.hpp"

namespace {

namespace fs = std::filesystem;
using namespace pangea;

// A directory of this process's own, removed at exit.
const fs::path& scratch() {
    static const fs::path dir = [] {
        const fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
        fs::path d = base / ("pangea-fuzz-token-shard-" + std::to_string(::getpid()));
        fs::create_directories(d);
        std::atexit([] { std::error_code ec; fs::remove_all(scratch(), ec); });
        return d;
    }();
    return dir;
}

void write(const fs::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void read_all(const TokenShard& shard) {
    std::vector<int32_t> tokens(std::min<uint64_t>(shard.size(), 1024));
    for (uint64_t first = 0; first < shard.size(); first += tokens.size()) {
        const std::span<int32_t> out(tokens.data(), std::min<uint64_t>(tokens.size(), shard.size() - first));
        shard.read(first, out);
        for (int32_t t : out)  // (a shard that records no vocabulary is trusted: docs/data.md)
            FUZZ_CHECK(t >= 0 && (shard.vocab() == 0 || static_cast<uint32_t>(t) < shard.vocab()),
                       "a token outside the shard's vocabulary was read: " + std::to_string(t));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input input(data, size);
    const uint8_t mode = input.byte();
    const int64_t seq_len = 8 + ((mode >> 1) & 7);
    std::error_code ec;
    fs::remove_all(scratch() / "shards", ec);
    DataSource source{"", 1.0, "fuzz"};
    if (mode & 1) {
        const size_t cut = input.integer<uint16_t>();
        const std::string bytes = input.rest();
        fs::create_directories(scratch() / "shards");
        write(scratch() / "shards" / "a.tok", bytes.substr(0, std::min(cut, bytes.size())));
        write(scratch() / "shards" / "b.tok", bytes.substr(std::min(cut, bytes.size())));
        source.path = (scratch() / "shards").string();
    } else {
        source.path = (scratch() / "shard.tok").string();
        write(source.path, input.rest());
    }

    if (!(mode & 1)) {
        try {
            const TokenShard shard(source.path);
            read_all(shard);
        } catch (const DataError&) {
        }
    }
    try {
        Sampler sampler({source}, seq_len, /*seed=*/mode, /*node=*/1, /*nodes=*/2);
        std::vector<int32_t> windows(3 * static_cast<size_t>(seq_len + 1));
        sampler.next(windows);
        sampler.held_out(0, std::span<int32_t>(windows).first(static_cast<size_t>(seq_len + 1)));
        sampler.held_out(7, std::span<int32_t>(windows).first(static_cast<size_t>(seq_len + 1)));
        for (int32_t t : windows) {
            FUZZ_CHECK(t >= 0, "the sampler drew a negative token: " + std::to_string(t));
            if (!(mode & 1) && sampler.vocab() != 0)  // one shard, which records its vocabulary
                FUZZ_CHECK(static_cast<uint32_t>(t) < sampler.vocab(),
                           "the sampler drew a token outside the vocabulary: " + std::to_string(t));
        }
        sampler.skip_to(5);
        sampler.next(windows);
    } catch (const DataError&) {
    }
    return 0;
}

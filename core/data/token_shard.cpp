#include "data/token_shard.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

namespace pangea {
namespace {

constexpr uint32_t kMaxTokenId = 0x7fffffff;  // tokens go on as int32

template <typename T>
T load(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

}  // namespace

TokenShard::TokenShard(const std::filesystem::path& path) : path_(path) {
    const std::string name = path.string();
    const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw DataError(name + ": cannot open token shard: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw DataError(name + ": not a regular file");
    }
    map_bytes_ = static_cast<size_t>(st.st_size);
    if (map_bytes_ < kShardHeaderBytes) {
        ::close(fd);
        throw DataError(name + ": " + std::to_string(map_bytes_) + " bytes is too short for a token shard (header is " +
                        std::to_string(kShardHeaderBytes) + "); make shards with `pangea data prepare`");
    }
    void* map = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) throw DataError(name + ": cannot map: " + std::strerror(errno));
    map_ = static_cast<const uint8_t*>(map);
    try {
        if (std::memcmp(map_, kShardMagic, sizeof kShardMagic) != 0)
            throw DataError(name + ": not a token shard (no PGTOKENS magic); make shards with `pangea data prepare`");
        const uint32_t version = load<uint32_t>(map_ + 8);
        if (version != kShardVersion)
            throw DataError(name + ": token shard format version " + std::to_string(version) + ", this build reads " +
                            std::to_string(kShardVersion));
        token_bytes_ = load<uint32_t>(map_ + 12);
        if (token_bytes_ != 2 && token_bytes_ != 4)
            throw DataError(name + ": token width " + std::to_string(token_bytes_) + " bytes; expected 2 or 4");
        count_ = load<uint64_t>(map_ + 16);
        vocab_ = load<uint32_t>(map_ + 24);
        if (vocab_ > kMaxTokenId + uint64_t{1})  // token ids are int32 from here on
            throw DataError(name + ": vocabulary size " + std::to_string(vocab_) + " is more than token ids can hold (2^31)");
        const uint64_t payload = map_bytes_ - kShardHeaderBytes;
        if (count_ > payload / token_bytes_ || payload != count_ * token_bytes_)
            throw DataError(name + ": header says " + std::to_string(count_) + " tokens of " +
                            std::to_string(token_bytes_) + " bytes, but the file holds " + std::to_string(payload) +
                            " bytes of tokens (truncated or corrupt)");
    } catch (...) {
        ::munmap(const_cast<uint8_t*>(map_), map_bytes_);
        throw;
    }
}

TokenShard::~TokenShard() {
    if (map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), map_bytes_);
}

TokenShard::TokenShard(TokenShard&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_bytes_(other.map_bytes_),
      count_(other.count_),
      vocab_(other.vocab_),
      token_bytes_(other.token_bytes_) {}

void TokenShard::read(uint64_t first, std::span<int32_t> out) const {
    const uint8_t* p = map_ + kShardHeaderBytes + first * token_bytes_;
    for (size_t i = 0; i < out.size(); ++i) {
        const uint32_t token = token_bytes_ == 2 ? load<uint16_t>(p + 2 * i) : load<uint32_t>(p + 4 * i);
        if (vocab_ != 0 && token >= vocab_)
            throw DataError(path_.string() + ": token " + std::to_string(token) + " at index " +
                            std::to_string(first + i) + " is outside the recorded vocabulary of " +
                            std::to_string(vocab_));
        if (token > kMaxTokenId)
            throw DataError(path_.string() + ": token " + std::to_string(token) + " at index " +
                            std::to_string(first + i) + " is more than token ids can hold (2^31 - 1)");
        out[i] = static_cast<int32_t>(token);
    }
}

void write_token_shard(const std::filesystem::path& path, std::span<const uint32_t> tokens, uint32_t vocab,
                       uint32_t token_bytes) {
    if (token_bytes != 2 && token_bytes != 4) throw DataError("token width must be 2 or 4 bytes");
    const std::filesystem::path temporary = path.string() + ".partial";
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        if (!out) throw DataError(temporary.string() + ": cannot write");
        uint8_t header[kShardHeaderBytes] = {};
        const uint64_t count = tokens.size();
        std::memcpy(header, kShardMagic, 8);
        std::memcpy(header + 8, &kShardVersion, 4);
        std::memcpy(header + 12, &token_bytes, 4);
        std::memcpy(header + 16, &count, 8);
        std::memcpy(header + 24, &vocab, 4);
        out.write(reinterpret_cast<const char*>(header), sizeof header);
        std::vector<uint8_t> block;
        block.reserve(1 << 20);
        for (size_t i = 0; i < tokens.size(); ++i) {
            const uint32_t t = tokens[i];
            if (token_bytes == 2 && t > 0xffff)
                throw DataError(path.string() + ": token " + std::to_string(t) + " does not fit 2 bytes");
            for (uint32_t b = 0; b < token_bytes; ++b) block.push_back(static_cast<uint8_t>(t >> (8 * b)));
            if (block.size() >= (1 << 20) || i + 1 == tokens.size()) {
                out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(block.size()));
                block.clear();
            }
        }
        if (!out.flush()) throw DataError(temporary.string() + ": write failed (disk full?)");
    }
    std::filesystem::rename(temporary, path);
}

}  // namespace pangea

// Helpers shared by the built-in compression plugins (header-only; plugins link nothing of the
// core): the common frame header, checked reads of untrusted bytes, and block-parallel loops.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <system_error>
#include <string>
#include <thread>
#include <vector>

#include "pangea/sdk.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace pangea::compress {

using pangea::sdk::Error;

// Every encoded buffer starts with this header (24 bytes, host byte order). `scheme` and
// `block_size` are the plugin's to define; n is the value count.
struct FrameHeader {
    char magic[4];
    uint8_t version;
    uint8_t scheme;
    uint16_t reserved;  // zero
    uint32_t block_size;
    uint32_t reserved2;  // zero
    uint64_t count;
};
static_assert(sizeof(FrameHeader) == 24, "the frame header is part of the wire format");

inline void write_header(uint8_t* dst, const char (&magic)[5], uint8_t version, uint8_t scheme,
                         uint32_t block_size, uint64_t count) {
    FrameHeader header{};
    std::memcpy(header.magic, magic, 4);
    header.version = version;
    header.scheme = scheme;
    header.block_size = block_size;
    header.count = count;
    std::memcpy(dst, &header, sizeof header);
}

// Reads and checks a header against what the caller expects; throws PANGEA_ERR_CORRUPT naming
// the first field that does not match.
inline FrameHeader read_header(const uint8_t* src, size_t bytes, const char (&magic)[5],
                               uint8_t version, size_t expected_count, const char* plugin) {
    FrameHeader header;
    if (src == nullptr || bytes < sizeof header)
        throw Error(PANGEA_ERR_CORRUPT, std::string(plugin) + ": " + std::to_string(bytes) +
                                            " bytes are too short for a frame header (24)");
    std::memcpy(&header, src, sizeof header);
    if (std::memcmp(header.magic, magic, 4) != 0)
        throw Error(PANGEA_ERR_CORRUPT, std::string(plugin) + ": bad magic (not " + plugin + " data)");
    if (header.version != version)
        throw Error(PANGEA_ERR_CORRUPT, std::string(plugin) + ": format version " +
                                            std::to_string(header.version) + ", expected " +
                                            std::to_string(version));
    if (header.reserved != 0 || header.reserved2 != 0)
        throw Error(PANGEA_ERR_CORRUPT, std::string(plugin) + ": reserved header fields are not zero");
    if (header.count != expected_count)
        throw Error(PANGEA_ERR_CORRUPT, std::string(plugin) + ": frame holds " +
                                            std::to_string(header.count) + " values, expected " +
                                            std::to_string(expected_count));
    return header;
}

// Below this many values, extra threads cost more than they save.
constexpr size_t kParallelThreshold = size_t{1} << 18;

// More values than any frame may hold (4 TiB of fp32): size arithmetic stays far from overflow.
constexpr size_t kMaxValues = size_t{1} << 40;

inline void require_count(size_t n, const char* plugin) {
    if (n > kMaxValues)
        throw Error(PANGEA_ERR_INVALID_ARGUMENT, std::string(plugin) + ": " + std::to_string(n) +
                                                     " values is more than one frame may hold (2^40)");
}

inline void require_capacity(size_t needed, size_t capacity, const char* plugin) {
    if (capacity < needed)
        throw Error(PANGEA_ERR_CAPACITY, std::string(plugin) + ": encoding needs " +
                                             std::to_string(needed) + " bytes, capacity is " +
                                             std::to_string(capacity));
}

inline void require_size(size_t bytes, size_t expected, const char* plugin) {
    if (bytes != expected)
        throw Error(PANGEA_ERR_CORRUPT, std::string(plugin) + ": frame is " + std::to_string(bytes) +
                                            " bytes, its header implies " +
                                            std::to_string(expected));
}

// Throws PANGEA_ERR_INVALID_DATA naming the first NaN or Inf among x[0, n); x[0] is value
// `first_index` of the caller's buffer. Called once a kernel has seen one.
[[noreturn]] inline void throw_not_finite(const char* plugin, const float* x, size_t n, size_t first_index) {
    for (size_t i = 0; i < n; ++i)
        if (!std::isfinite(x[i]))
            throw Error(PANGEA_ERR_INVALID_DATA, std::string(plugin) + ": value " + std::to_string(first_index + i) +
                                                     " is " + (std::isnan(x[i]) ? "NaN" : "infinite") + "; " + plugin +
                                                     " encodes finite values only");
    throw Error(PANGEA_ERR_INTERNAL, std::string(plugin) + ": a non-finite value was reported but not found");
}

// Runs body(first, last) over [0, count) split into `threads` contiguous ranges on as many
// threads (the calling thread takes the first). Results cannot depend on the split: callers split
// on block boundaries and blocks are independent. Exceptions are rethrown on the caller.
template <class Body>
void parallel_ranges(size_t count, unsigned threads, const Body& body) {
    if (threads <= 1 || count < 2) {
        body(size_t{0}, count);
        return;
    }
    threads = static_cast<unsigned>(std::min<size_t>(threads, count));
    std::vector<std::exception_ptr> errors(threads);
    std::vector<std::thread> workers;
    auto run = [&](unsigned t) {
        try {
            body(count * t / threads, count * (t + 1) / threads);
        } catch (...) {
            errors[t] = std::current_exception();
        }
    };
    unsigned started = 1;
    try {
        for (; started < threads; ++started) workers.emplace_back(run, started);
    } catch (const std::system_error&) {
        // No thread to be had: the calling thread does the ranges that have none. The result is
        // the same, since ranges are independent.
    }
    for (unsigned t = started; t < threads; ++t) run(t);
    run(0);
    for (auto& worker : workers) worker.join();
    for (auto& error : errors)
        if (error) std::rethrow_exception(error);
}

// Whether this CPU runs the AVX2 (and F16C) kernels. Checked once.
inline bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
    static const bool has = [] {
        // F16C from CPUID itself: clang before 15 has no __builtin_cpu_supports("f16c").
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
        return __builtin_cpu_supports("avx2") && f16c;
    }();
    return has;
#else
    return false;
#endif
}

}  // namespace pangea::compress

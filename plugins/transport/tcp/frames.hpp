// The tcp transport's wire format (docs/plugins/transport.md). Host byte order: peers must share
// endianness, which every platform Pangea builds for does (little-endian); the magic catches
// a mismatch.
//
// Handshake, on every stream of a connection: the connecting side sends a Hello; once all its
// streams have arrived the accepting side answers each with its own Hello, whose `status` says
// whether it accepted. Then data: each message is cut into chunks of at most chunk_bytes; each
// chunk travels on whichever stream is free next, as a DataHeader (sequence number of the
// message, its size, the chunk's offset and length) followed by the chunk. An empty message is
// one empty chunk; every other chunk but a message's last holds at least kMinChunk bytes. The
// receiver writes each chunk at its offset in the posted buffer; chunks of one message never
// overlap.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace pangea::tcp {

constexpr uint16_t kProtocolVersion = 2;
constexpr uint32_t kMaxStreams = 64;
// The smallest chunk but a message's last (also the least chunk_bytes): it bounds how many
// separate pieces of a message a receiver has to remember (see Op in tcp.cpp).
constexpr uint64_t kMinChunk = 4096;

enum HelloStatus : uint32_t {
    kHelloRequest = 0,       // sent by the connecting side
    kHelloAccepted = 1,      // the answer: go ahead
    kHelloWrongRun = 2,      // the answer: the run ids differ
    kHelloBadRequest = 3,    // the answer: malformed or inconsistent stream set
};

struct Hello {
    char magic[4];           // "PGTH"
    uint16_t version;        // kProtocolVersion
    uint16_t stream_index;   // which stream of the connection this socket is
    uint16_t stream_count;   // streams in the connection, 1..kMaxStreams
    uint16_t reserved;       // zero
    uint32_t node_id;
    uint32_t channel;
    uint32_t status;         // HelloStatus
    uint64_t run_id;
    uint64_t nonce;          // random per connection: groups the streams of one connection
};
static_assert(sizeof(Hello) == 40);

constexpr uint8_t kFlagChecksum = 1;

struct DataHeader {
    char magic[4];           // "PGTD"
    uint8_t version;         // kProtocolVersion
    uint8_t flags;           // kFlagChecksum: `checksum` holds the CRC-32C of the chunk
    uint16_t stream_index;
    uint32_t checksum;
    uint32_t reserved;       // zero
    uint64_t sequence;       // the message, per connection and direction, from 0
    uint64_t message_bytes;  // the whole message
    uint64_t offset;         // where this chunk starts in the message
    uint64_t part_bytes;     // the chunk: what follows this header on this stream
};
static_assert(sizeof(DataHeader) == 48);

// The checks of what a peer sends, before anything is done with it: "" or what is wrong (the
// connection is then closed with PANGEA_ERR_CORRUPT). Free functions, so that the fuzz targets
// (tests/fuzz) exercise exactly these.
inline std::string check_hello(const Hello& h) {
    if (std::memcmp(h.magic, "PGTH", 4) != 0) return "not a Pangea tcp handshake (bad magic)";
    if (h.version != kProtocolVersion)
        return "handshake version " + std::to_string(h.version) + ", this side speaks " + std::to_string(kProtocolVersion);
    if (h.stream_count == 0 || h.stream_count > kMaxStreams || h.stream_index >= h.stream_count || h.reserved != 0)
        return "inconsistent stream numbers in the handshake";
    return "";
}

// A data frame's header arriving on stream `stream`.
inline std::string check_data_header(const DataHeader& h, uint32_t stream, uint64_t max_message) {
    if (std::memcmp(h.magic, "PGTD", 4) != 0) return "bad frame magic (garbage on the stream?)";
    if (h.version != kProtocolVersion)
        return "frame version " + std::to_string(h.version) + ", expected " + std::to_string(kProtocolVersion);
    if (h.stream_index != stream)
        return "frame for stream " + std::to_string(h.stream_index) + " on stream " + std::to_string(stream);
    if (h.reserved != 0 || (h.flags & ~kFlagChecksum) != 0) return "reserved frame bits are set";
    if (h.message_bytes > max_message)
        return "message of " + std::to_string(h.message_bytes) + " bytes exceeds max_message " + std::to_string(max_message);
    if (h.offset > h.message_bytes || h.part_bytes > h.message_bytes - h.offset)
        return "chunk [" + std::to_string(h.offset) + ", +" + std::to_string(h.part_bytes) +
               ") lies outside its message of " + std::to_string(h.message_bytes) + " bytes";
    if (h.part_bytes == 0 && h.message_bytes != 0) return "an empty chunk of a message that is not empty";
    if (h.part_bytes < kMinChunk && h.offset + h.part_bytes != h.message_bytes)
        return "a chunk of " + std::to_string(h.part_bytes) + " bytes that is not its message's last (chunks are at least " +
               std::to_string(kMinChunk) + " bytes)";
    return "";
}

// CRC-32C (Castagnoli), with the SSE4.2 instruction where the CPU has it.
inline uint32_t crc32c_portable(uint32_t crc, const uint8_t* data, size_t bytes) {
    static const auto table = [] {
        struct Table { uint32_t entries[256]; } t{};
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
            t.entries[i] = c;
        }
        return t;
    }();
    for (size_t i = 0; i < bytes; ++i) crc = table.entries[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) inline uint32_t crc32c_sse42(uint32_t crc, const uint8_t* data, size_t bytes) {
    uint64_t c = crc;
    while (bytes >= 8) {
        uint64_t word;
        std::memcpy(&word, data, 8);
        c = _mm_crc32_u64(c, word);
        data += 8;
        bytes -= 8;
    }
    uint32_t c32 = static_cast<uint32_t>(c);
    while (bytes-- > 0) c32 = _mm_crc32_u8(c32, *data++);
    return c32;
}
#endif

inline uint32_t crc32c(const void* data, size_t bytes) {
    const auto* p = static_cast<const uint8_t*>(data);
#if defined(__x86_64__)
    static const bool has_sse42 = __builtin_cpu_supports("sse4.2");
    if (has_sse42) return ~crc32c_sse42(~0u, p, bytes);
#endif
    return ~crc32c_portable(~0u, p, bytes);
}

}  // namespace pangea::tcp

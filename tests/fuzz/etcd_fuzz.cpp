// core/membership/etcd: how the etcd client reads the JSON gateway's answers (base64 keys and values, a
// range answer's keys) and its watch stream (one JSON object per line, in chunks as libcurl hands
// them over). etcd is reached over plain HTTP: its answers are input.
//
// Input: a first byte (what to read: 0 a range answer written here from the rest of the input,
// cut into keys and values; 1 a range answer as it comes; 2 a watch stream, in chunks of the
// second byte + 1), then the text.
// Properties: parse_range returns or throws MeshError; the watch parser never throws (what it
// cannot read ends the stream with an error) and reads the same whatever the chunks; a range
// answer written with nlohmann-json, as the gateway would, reads back exactly.
#include "common/json.hpp"
#include "fuzz_support.hpp"
#include "membership/etcd.hpp"

namespace {

using namespace pangea;

struct Reading {
    bool failed = false;
    int64_t revision = 0;
    std::vector<std::tuple<bool, std::string, std::string>> events;
    bool operator==(const Reading&) const = default;
};

Reading watch(const std::vector<std::string>& chunks) {
    Reading r;
    std::string error;
    r.revision = etcd_detail::parse_watch(
        chunks, 1, [&](const EtcdEvent& e) { r.events.emplace_back(e.deleted, e.key, e.value); }, &error);
    r.failed = !error.empty();
    return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input input(data, size);
    const uint8_t mode = input.byte() % 3;
    const uint8_t detail = input.byte();

    if (mode == 0) {
        std::vector<EtcdKey> keys;
        Json kvs = Json::array();
        while (!input.empty() && keys.size() < 8) {
            EtcdKey k{input.bytes(input.byte() % 16), input.bytes(input.byte() % 64), input.integer<int64_t>()};
            kvs.push_back({{"key", etcd_detail::encode_base64(k.key)},
                           {"create_revision", std::to_string(k.create_revision)},
                           {"value", etcd_detail::encode_base64(k.value)}});
            keys.push_back(std::move(k));
        }
        const std::string answer = to_json(Json{{"header", {{"revision", std::to_string(detail)}}}, {"kvs", kvs}});
        int64_t revision = -1;
        std::vector<EtcdKey> read;
        try {
            read = etcd_detail::parse_range(answer, &revision);
        } catch (const MeshError& e) {
            FUZZ_CHECK(false, std::string("a range answer written as JSON does not read: ") + e.what());
        }
        FUZZ_CHECK(revision == detail && read.size() == keys.size(), "a range answer reads differently: " + answer);
        for (size_t i = 0; i < keys.size(); ++i)
            FUZZ_CHECK(read[i].key == keys[i].key && read[i].value == keys[i].value &&
                           read[i].create_revision == keys[i].create_revision,
                       "a key of a range answer reads differently: " + answer);
        return 0;
    }
    const std::string text = input.rest();
    (void)etcd_detail::decode_base64(text);
    if (mode == 1) {
        int64_t revision = 0;
        try {
            for (const EtcdKey& k : etcd_detail::parse_range(text, &revision)) (void)k;
        } catch (const MeshError&) {
        }
    } else {
        const size_t chunk = size_t{detail} + 1;
        std::vector<std::string> chunks;
        for (size_t at = 0; at < text.size(); at += chunk) chunks.push_back(text.substr(at, chunk));
        const Reading chunked = watch(chunks), whole = watch({text});
        FUZZ_CHECK(chunked == whole, "a watch stream reads differently in chunks of " + std::to_string(chunk));
    }
    return 0;
}

// core/mesh/etcd: how the etcd client reads the JSON gateway's answers (one field by name,
// base64 keys and values, a range answer's keys) and its watch stream (one JSON object per line,
// in chunks as libcurl hands them over). etcd is reached over plain HTTP: its answers are input.
//
// Input: a first byte (what to read: 0 one field, named by the second byte, and its base64;
// 1 a range answer; 2 a watch stream, in chunks of the second byte + 1), then the text.
// Properties: parse_range returns or throws MeshError; the watch parser never throws (what it
// cannot read ends the stream with an error); nothing else throws. And on inputs short enough
// for std::regex (which overflows the stack on long fields: why the client no longer uses it),
// the client reads exactly what the regular expressions it used before read.
#include <map>
#include <regex>

#include "fuzz_support.hpp"
#include "mesh/etcd.hpp"

namespace {

using namespace pangea;

// ---- the client's former reading, with std::regex
std::optional<std::string> regex_field(const std::string& json, const std::string& name) {
    static std::map<std::string, std::regex> patterns;  // (the client compiled one per call)
    auto found = patterns.find(name);
    if (found == patterns.end())
        found = patterns.emplace(name, std::regex("\"" + name + "\"\\s*:\\s*(\"([^\"]*)\"|true|false|-?[0-9]+)")).first;
    const std::regex& pattern = found->second;
    std::smatch match;
    if (!std::regex_search(json, match, pattern)) return std::nullopt;
    return match[2].matched ? match[2].str() : match[1].str();
}

std::optional<int64_t> regex_number(const std::string& text) {
    try {
        return std::stoll(text);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

struct Reading {
    bool failed = false;
    int64_t revision = 0;
    std::vector<std::tuple<bool, std::string, std::string, int64_t>> items;
};

Reading regex_range(const std::string& answer) {
    Reading r;
    const auto revision = regex_number(regex_field(answer, "revision").value_or("0"));
    if (!revision) return {true, 0, {}};
    r.revision = *revision;
    static const std::regex kv("\\{\"key\":\"[^}]*\\}");
    for (auto it = std::sregex_iterator(answer.begin(), answer.end(), kv); it != std::sregex_iterator(); ++it) {
        const std::string object = it->str();
        const auto created = regex_number(regex_field(object, "create_revision").value_or("0"));
        if (!created) return {true, 0, {}};
        r.items.emplace_back(false, etcd_detail::decode_base64(regex_field(object, "key").value_or("")),
                             etcd_detail::decode_base64(regex_field(object, "value").value_or("")), *created);
    }
    return r;
}

Reading regex_watch(const std::string& stream, int64_t from_revision) {
    Reading r;
    r.revision = from_revision - 1;
    static const std::regex event("\\{(\"type\":\"(PUT|DELETE)\",)?\"kv\":\\{([^}]*)\\}");
    size_t start = 0;
    for (size_t end; (end = stream.find('\n', start)) != std::string::npos; start = end + 1) {
        const std::string line = stream.substr(start, end - start);
        if (line.find("\"error\"") != std::string::npos || line.find("\"canceled\":true") != std::string::npos) {
            r.failed = true;
            return r;
        }
        for (auto it = std::sregex_iterator(line.begin(), line.end(), event); it != std::sregex_iterator(); ++it) {
            const std::string kv = (*it)[3].str();
            const auto revision = regex_number(regex_field(kv, "mod_revision").value_or("0"));
            if (!revision) {
                r.failed = true;
                return r;
            }
            r.revision = std::max(r.revision, *revision);
            r.items.emplace_back((*it)[2].str() == "DELETE", etcd_detail::decode_base64(regex_field(kv, "key").value_or("")),
                                 etcd_detail::decode_base64(regex_field(kv, "value").value_or("")), 0);
        }
    }
    return r;
}

constexpr size_t kRegexSafe = 2048;  // std::regex needs about 160 bytes of stack per character

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input input(data, size);
    const uint8_t mode = input.byte() % 3;
    const uint8_t detail = input.byte();
    const std::string text = input.rest();
    const bool compare = text.size() <= kRegexSafe;

    if (mode == 0) {
        static const char* const names[] = {"ID", "TTL", "succeeded", "revision", "value", "key", "create_revision", "mod_revision"};
        const auto field = etcd_detail::answer_field(text, names[detail % 8]);
        if (field) (void)etcd_detail::decode_base64(*field);
        (void)etcd_detail::decode_base64(text);
        if (compare) FUZZ_CHECK(field == regex_field(text, names[detail % 8]), "a field reads differently than with the regex");
    } else if (mode == 1) {
        Reading got;
        try {
            for (const EtcdKey& k : etcd_detail::parse_range(text, &got.revision))
                got.items.emplace_back(false, k.key, k.value, k.create_revision);
        } catch (const MeshError&) {
            got = {true, 0, {}};
        }
        if (compare) {
            const Reading expected = regex_range(text);
            FUZZ_CHECK(got.failed == expected.failed && got.revision == expected.revision && got.items == expected.items,
                       "a range answer reads differently than with the regexes");
        }
    } else {
        const size_t chunk = size_t{detail} + 1;
        std::vector<std::string> chunks;
        for (size_t at = 0; at < text.size(); at += chunk) chunks.push_back(text.substr(at, chunk));
        Reading got;
        std::string error;
        got.revision = etcd_detail::parse_watch(
            chunks, 1, [&](const EtcdEvent& e) { got.items.emplace_back(e.deleted, e.key, e.value, 0); }, &error);
        got.failed = !error.empty();
        if (compare) {
            const Reading expected = regex_watch(text, 1);
            FUZZ_CHECK(got.failed == expected.failed && got.items == expected.items &&
                           (got.failed || got.revision == expected.revision),
                       "a watch stream reads differently than with the regexes");
        }
    }
    return 0;
}

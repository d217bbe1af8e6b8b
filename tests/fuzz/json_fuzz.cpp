// core/common/json: parse_json (coordinator messages, etcd answers, status files, checkpoint and
// safetensors headers) and to_json.
//
// Properties: parse_json either returns a value or throws JsonError (never anything else); a
// value it returns, written back with to_json, parses to the same value. And what to_json
// writes reads back: the input cut into strings and integers, written as an object, reparses to
// exactly those (strings that are not UTF-8 come back with U+FFFD in place of the bad bytes).
#include "common/json.hpp"
#include "fuzz_support.hpp"

namespace {

bool is_utf8(const std::string& text) {
    try {
        (void)pangea::Json(text).dump();
        return true;
    } catch (const pangea::Json::type_error&) {
        return false;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);

    // Any JSON document.
    try {
        const pangea::Json value = pangea::parse_json(text);
        const std::string again = pangea::to_json(value);
        try {
            FUZZ_CHECK(pangea::parse_json(again) == value, "a parsed document, written back, parses to another value: " + again);
        } catch (const pangea::JsonError& e) {
            FUZZ_CHECK(false, std::string("a parsed document, written back, does not parse: ") + e.what());
        }
    } catch (const pangea::JsonError&) {
    }

    // What to_json writes reads back: the input cut into string and integer fields.
    pangea::fuzz::Input input(data, size);
    pangea::Json object = pangea::Json::object();
    for (int i = 0; !input.empty() && i < 8; ++i) {
        const std::string key = "k" + std::to_string(i);
        const uint8_t kind = input.byte();
        if (kind % 3 == 0) object[key] = input.integer<int64_t>();
        else object[key] = input.bytes(kind % 32);
    }
    const std::string written = pangea::to_json(object);
    FUZZ_CHECK(written.find('\n') == std::string::npos, "to_json wrote more than one line: " + written);
    pangea::Json read;
    try {
        read = pangea::parse_json(written);
    } catch (const pangea::JsonError& e) {
        FUZZ_CHECK(false, "parse_json refuses what to_json wrote (" + std::string(e.what()) + "): " + written);
    }
    for (const auto& [key, value] : object.items()) {
        if (value.is_string() && !is_utf8(value.get<std::string>())) {
            FUZZ_CHECK(pangea::json_string(read, key.c_str()).has_value(), "a string that is not UTF-8 is lost: " + written);
            continue;
        }
        FUZZ_CHECK(read.contains(key) && read[key] == value, "parse_json reads " + key + " of " + written + " as something else");
    }
    return 0;
}

// core/common/json: parse_json (checkpoint headers, safetensors headers) and parse_flat_json (the
// coordinator's wire messages, the etcd registrations).
//
// Properties: parse_json either returns a value or throws JsonError; a value it returns, written
// back out with json_quote for its strings, parses to the same value. parse_flat_json never
// throws, and reads back every string JsonObject writes (strings without control characters:
// those JsonObject writes as \u00XX, which the flat reader does not decode).
#include <cmath>
#include <cstdio>
#include <map>

#include "common/json.hpp"
#include "fuzz_support.hpp"

namespace {

using pangea::JsonValue;

bool finite_everywhere(const JsonValue& v) {
    if (v.type == JsonValue::Type::kNumber) return std::isfinite(v.number);
    for (const auto& item : v.items)
        if (!finite_everywhere(item)) return false;
    for (const auto& [name, field] : v.fields)
        if (!finite_everywhere(field)) return false;
    return true;
}

std::string write(const JsonValue& v) {
    switch (v.type) {
        case JsonValue::Type::kNull: return "null";
        case JsonValue::Type::kBool: return v.boolean ? "true" : "false";
        case JsonValue::Type::kNumber: {
            char text[40];
            std::snprintf(text, sizeof text, "%.17g", v.number);
            return text;
        }
        case JsonValue::Type::kString: return pangea::json_quote(v.string);
        case JsonValue::Type::kArray: {
            std::string out = "[";
            for (const auto& item : v.items) out += (out.size() > 1 ? "," : "") + write(item);
            return out + "]";
        }
        case JsonValue::Type::kObject: {
            std::string out = "{";
            for (const auto& [name, field] : v.fields)
                out += (out.size() > 1 ? "," : "") + pangea::json_quote(name) + ":" + write(field);
            return out + "}";
        }
    }
    return "";
}

bool same(const JsonValue& a, const JsonValue& b) {
    if (a.type != b.type || a.boolean != b.boolean || a.string != b.string) return false;
    if (a.type == JsonValue::Type::kNumber && a.number != b.number) return false;
    if (a.items.size() != b.items.size() || a.fields.size() != b.fields.size()) return false;
    for (size_t i = 0; i < a.items.size(); ++i)
        if (!same(a.items[i], b.items[i])) return false;
    for (size_t i = 0; i < a.fields.size(); ++i)
        if (a.fields[i].first != b.fields[i].first || !same(a.fields[i].second, b.fields[i].second)) return false;
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);

    // Any JSON document.
    try {
        const JsonValue value = pangea::parse_json(text);
        if (finite_everywhere(value)) {
            const std::string again = write(value);
            JsonValue reparsed;
            try {
                reparsed = pangea::parse_json(again);
            } catch (const pangea::JsonError& e) {
                FUZZ_CHECK(false, std::string("a parsed document, written back, does not parse: ") + e.what());
            }
            FUZZ_CHECK(same(value, reparsed), "a parsed document, written back, parses to another value");
        }
    } catch (const pangea::JsonError&) {
    }

    // A flat object (a coordinator message).
    if (const auto fields = pangea::parse_flat_json(text)) {
        for (const auto& [name, value] : *fields) (void)name, (void)value;
    }

    // What JsonObject writes, the flat reader reads back: the input cut into string values.
    pangea::fuzz::Input input(data, size);
    pangea::JsonObject object;
    std::map<std::string, std::string> written;
    for (int i = 0; !input.empty() && i < 8; ++i) {
        const std::string key = "k" + std::to_string(i);
        const uint8_t kind = input.byte();
        if (kind % 3 == 0) {
            const auto number = input.integer<int64_t>();
            object.add(key, number);
            written[key] = std::to_string(number);
        } else {
            const std::string value = input.bytes(kind % 32);
            object.add(key, value);
            bool control = false;
            for (char c : value) control |= static_cast<unsigned char>(c) < 0x20;
            written[key] = control ? std::string("\x01 skip") : value;
        }
    }
    const auto read = pangea::parse_flat_json(object.text());
    FUZZ_CHECK(read.has_value(), "parse_flat_json refuses what JsonObject wrote: " + object.text());
    for (const auto& [key, value] : written) {
        if (value == "\x01 skip") continue;
        const auto found = read->find(key);
        FUZZ_CHECK(found != read->end() && found->second == value,
                   "parse_flat_json reads " + key + " of " + object.text() + " as something else");
    }
    return 0;
}

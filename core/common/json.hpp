// JSON: flat objects written and read field by field (the metrics files, the coordinator's
// wire messages), and a small reader of any JSON document (checkpoint headers).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pangea {

// One flat JSON object, fields in insertion order.
class JsonObject {
public:
    JsonObject& add(const std::string& key, double value);
    JsonObject& add(const std::string& key, int64_t value);
    JsonObject& add(const std::string& key, int value) { return add(key, int64_t{value}); }
    JsonObject& add(const std::string& key, uint64_t value) { return add(key, static_cast<int64_t>(value)); }
    JsonObject& add(const std::string& key, bool value);
    JsonObject& add(const std::string& key, const std::string& value);
    JsonObject& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
    // `json`: a value already written as JSON (an array, a nested object).
    JsonObject& add_json(const std::string& key, const std::string& json);
    std::string text() const { return "{" + body_ + "}"; }

private:
    void key(const std::string& name);
    std::string body_;
};

// Reads the numbers and strings of a flat JSON object written by JsonObject; nullopt if the text
// is not one.
std::optional<std::map<std::string, std::string>> parse_flat_json(const std::string& text);

std::string json_quote(const std::string& text);  // "text" with escapes

// A parsed JSON value. Objects keep their fields in document order.
struct JsonValue {
    enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
    JsonValue() = default;  // declared, or clang (< 17) rejects `fields` below (JsonValue is incomplete there)
    Type type = Type::kNull;
    bool boolean = false;
    double number = 0;
    std::string string;
    std::vector<JsonValue> items;                         // kArray
    std::vector<std::pair<std::string, JsonValue>> fields;  // kObject

    const JsonValue* find(const std::string& key) const;  // nullptr if absent or not an object
};

class JsonError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Parses one JSON document. Throws JsonError "at byte N: ..." for malformed text, or nesting
// deeper than 64.
JsonValue parse_json(std::string_view text);

}  // namespace pangea

// Flat JSON objects (numbers, booleans, strings; no nesting): the metrics files and the
// coordinator's wire messages are one object each.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

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
    std::string text() const { return "{" + body_ + "}"; }

private:
    void key(const std::string& name);
    std::string body_;
};

// Reads the numbers and strings of a flat JSON object written by JsonObject; nullopt if the text
// is not one.
std::optional<std::map<std::string, std::string>> parse_flat_json(const std::string& text);

}  // namespace pangea

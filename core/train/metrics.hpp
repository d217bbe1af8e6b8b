// Metrics a node writes into the run directory:
//   metrics/node-<i>.jsonl   one JSON object per outer step
//   status/node-<i>.json     where the node is right now (rewritten atomically, for `pangea launch`)
//   summary/node-<i>.json    totals at the end
// Field names are documented in docs/training.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <variant>
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
    std::string text() const { return "{" + body_ + "}"; }

private:
    void key(const std::string& name);
    std::string body_;
};

// Reads the numbers and strings of a flat JSON object written by JsonObject (what the launcher
// needs from status files); nullopt if the text is not one.
std::optional<std::map<std::string, std::string>> parse_flat_json(const std::string& text);

// Writes text to path through a temporary file and a rename: readers see all or nothing.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace pangea

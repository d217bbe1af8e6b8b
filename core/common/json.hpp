// JSON through nlohmann-json (core only: nlohmann stays out of the SDK headers). Json keeps an
// object's fields in the order they were written, so that the files read well. What comes from
// the network or from files is parsed with parse_json and read with the json_* field helpers,
// which never throw on a missing or mistyped field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pangea {

using Json = nlohmann::ordered_json;

class JsonError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Parses one JSON document of untrusted text. Throws JsonError saying what is wrong and where
// ("parse error at line 1, column 7: ...") when the text is not JSON (or not UTF-8), or when it
// nests deeper than 64 (the recursive walks over a value must not run out of stack).
Json parse_json(std::string_view text);

// Compact text of `value`. Bytes that are not UTF-8 (in an error message, a path) become U+FFFD
// instead of throwing.
std::string to_json(const Json& value);

// A field of an object: nullopt when `object` is not an object, the field is absent, or it has
// another type (an integer must be one, and fit).
std::optional<int64_t> json_int(const Json& object, const char* key);
std::optional<double> json_number(const Json& object, const char* key);  // any number
std::optional<std::string> json_string(const Json& object, const char* key);
std::optional<bool> json_bool(const Json& object, const char* key);

}  // namespace pangea

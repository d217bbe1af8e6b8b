#include "common/json.hpp"

#include <limits>

namespace pangea {

Json parse_json(std::string_view text) {
    constexpr int kMaxDepth = 64;
    try {
        return Json::parse(text, [](int depth, Json::parse_event_t, Json&) {
            if (depth > kMaxDepth) throw JsonError("nested deeper than " + std::to_string(kMaxDepth));
            return true;
        });
    } catch (const Json::parse_error& e) {
        // "[json.exception.parse_error.101] parse error at line 1, column 7: ...": the part after the tag.
        const std::string_view what = e.what();
        const size_t tag_end = what.find("] ");
        throw JsonError(std::string(tag_end == std::string_view::npos ? what : what.substr(tag_end + 2)));
    }
}

std::string to_json(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

namespace {

const Json* field(const Json& object, const char* key) {
    if (!object.is_object()) return nullptr;
    const auto found = object.find(key);
    return found == object.end() ? nullptr : &*found;
}

}  // namespace

std::optional<int64_t> json_int(const Json& object, const char* key) {
    const Json* v = field(object, key);
    if (v == nullptr) return std::nullopt;
    if (v->is_number_unsigned()) {
        const auto u = v->get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
        return static_cast<int64_t>(u);
    }
    if (v->is_number_integer()) return v->get<int64_t>();
    return std::nullopt;
}

std::optional<double> json_number(const Json& object, const char* key) {
    const Json* v = field(object, key);
    if (v == nullptr || !v->is_number()) return std::nullopt;
    return v->get<double>();
}

std::optional<std::string> json_string(const Json& object, const char* key) {
    const Json* v = field(object, key);
    if (v == nullptr || !v->is_string()) return std::nullopt;
    return v->get<std::string>();
}

std::optional<bool> json_bool(const Json& object, const char* key) {
    const Json* v = field(object, key);
    if (v == nullptr || !v->is_boolean()) return std::nullopt;
    return v->get<bool>();
}

}  // namespace pangea

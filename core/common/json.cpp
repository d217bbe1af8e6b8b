#include "common/json.hpp"

#include <cmath>
#include <cstdio>

namespace pangea {

void JsonObject::key(const std::string& name) {
    if (!body_.empty()) body_ += ",";
    body_ += "\"" + name + "\":";
}

JsonObject& JsonObject::add(const std::string& name, double value) {
    key(name);
    if (!std::isfinite(value)) {
        body_ += "null";
        return *this;
    }
    char text[40];
    std::snprintf(text, sizeof text, "%.9g", value);
    body_ += text;
    return *this;
}

JsonObject& JsonObject::add(const std::string& name, int64_t value) {
    key(name);
    body_ += std::to_string(value);
    return *this;
}

JsonObject& JsonObject::add(const std::string& name, bool value) {
    key(name);
    body_ += value ? "true" : "false";
    return *this;
}

JsonObject& JsonObject::add(const std::string& name, const std::string& value) {
    key(name);
    body_ += "\"";
    for (char c : value) {
        if (c == '"' || c == '\\') body_ += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            body_ += escaped;
            continue;
        }
        body_ += c;
    }
    body_ += "\"";
    return *this;
}

std::optional<std::map<std::string, std::string>> parse_flat_json(const std::string& text) {
    std::map<std::string, std::string> out;
    size_t i = text.find('{');
    if (i == std::string::npos) return std::nullopt;
    ++i;
    auto skip = [&] {
        while (i < text.size() && (text[i] == ' ' || text[i] == ',' || text[i] == '\n')) ++i;
    };
    auto string_at = [&](std::string* value) {
        if (i >= text.size() || text[i] != '"') return false;
        ++i;
        while (i < text.size() && text[i] != '"') {
            if (text[i] == '\\' && i + 1 < text.size()) ++i;
            *value += text[i++];
        }
        if (i >= text.size()) return false;
        ++i;
        return true;
    };
    while (true) {
        skip();
        if (i >= text.size()) return std::nullopt;
        if (text[i] == '}') return out;
        std::string name, value;
        if (!string_at(&name)) return std::nullopt;
        if (i >= text.size() || text[i] != ':') return std::nullopt;
        ++i;
        if (i < text.size() && text[i] == '"') {
            if (!string_at(&value)) return std::nullopt;
        } else {
            while (i < text.size() && text[i] != ',' && text[i] != '}') value += text[i++];
        }
        out[name] = value;
    }
}

}  // namespace pangea

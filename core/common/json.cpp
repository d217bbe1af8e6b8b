#include "common/json.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

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

std::string json_quote(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            out += escaped;
            continue;
        }
        out += c;
    }
    return out + "\"";
}

JsonObject& JsonObject::add(const std::string& name, const std::string& value) {
    key(name);
    body_ += json_quote(value);
    return *this;
}

JsonObject& JsonObject::add_json(const std::string& name, const std::string& json) {
    key(name);
    body_ += json;
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

const JsonValue* JsonValue::find(const std::string& key) const {
    if (type != Type::kObject) return nullptr;
    for (const auto& [name, value] : fields)
        if (name == key) return &value;
    return nullptr;
}

namespace {

class JsonParser {
public:
    explicit JsonParser(std::string_view text) : text_(text) {}

    JsonValue document() {
        JsonValue value = parse(0);
        space();
        if (at_ < text_.size()) fail("text after the document");
        return value;
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw JsonError("at byte " + std::to_string(at_) + ": " + what);
    }
    void space() {
        while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\n' || text_[at_] == '\r' || text_[at_] == '\t'))
            ++at_;
    }
    bool take(char c) {
        space();
        if (at_ < text_.size() && text_[at_] == c) return ++at_, true;
        return false;
    }
    void expect(char c) {
        if (!take(c)) fail(std::string("expected '") + c + "'");
    }
    bool word(std::string_view w) {
        if (text_.substr(at_, w.size()) != w) return false;
        at_ += w.size();
        return true;
    }

    JsonValue parse(int depth) {
        if (depth > 64) fail("nested deeper than 64");
        space();
        if (at_ >= text_.size()) fail("unexpected end");
        JsonValue v;
        const char c = text_[at_];
        if (c == '{') {
            ++at_;
            v.type = JsonValue::Type::kObject;
            if (take('}')) return v;
            do {
                space();
                std::string key = string();
                expect(':');
                v.fields.emplace_back(std::move(key), parse(depth + 1));
            } while (take(','));
            expect('}');
        } else if (c == '[') {
            ++at_;
            v.type = JsonValue::Type::kArray;
            if (take(']')) return v;
            do v.items.push_back(parse(depth + 1));
            while (take(','));
            expect(']');
        } else if (c == '"') {
            v.type = JsonValue::Type::kString;
            v.string = string();
        } else if (word("true") || word("false")) {
            v.type = JsonValue::Type::kBool;
            v.boolean = text_[at_ - 1] == 'e' && text_[at_ - 2] == 'u';
        } else if (word("null")) {
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            const size_t start = at_;
            while (at_ < text_.size() && std::string_view("+-0123456789.eE").find(text_[at_]) != std::string_view::npos) ++at_;
            const std::string number(text_.substr(start, at_ - start));
            char* end = nullptr;
            v.type = JsonValue::Type::kNumber;
            v.number = std::strtod(number.c_str(), &end);
            if (end != number.c_str() + number.size()) fail("bad number '" + number + "'");
        } else {
            fail(std::string("unexpected character '") + c + "'");
        }
        return v;
    }

    std::string string() {
        if (at_ >= text_.size() || text_[at_] != '"') fail("expected a string");
        ++at_;
        std::string out;
        while (true) {
            if (at_ >= text_.size()) fail("unterminated string");
            const char c = text_[at_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (at_ >= text_.size()) fail("unterminated escape");
            const char e = text_[at_++];
            switch (e) {
                case '"': case '\\': case '/': out += e; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    if (at_ + 4 > text_.size()) fail("short \\u escape");
                    for (size_t k = 0; k < 4; ++k)
                        if (!std::isxdigit(static_cast<unsigned char>(text_[at_ + k]))) fail("bad \\u escape");
                    const unsigned code = static_cast<unsigned>(std::stoul(std::string(text_.substr(at_, 4)), nullptr, 16));
                    at_ += 4;
                    // UTF-8 of the code unit (surrogate pairs are kept as two units: enough for our headers).
                    if (code < 0x80) out += static_cast<char>(code);
                    else if (code < 0x800) out += static_cast<char>(0xc0 | (code >> 6)), out += static_cast<char>(0x80 | (code & 0x3f));
                    else
                        out += static_cast<char>(0xe0 | (code >> 12)), out += static_cast<char>(0x80 | ((code >> 6) & 0x3f)),
                            out += static_cast<char>(0x80 | (code & 0x3f));
                    break;
                }
                default: fail(std::string("bad escape '\\") + e + "'");
            }
        }
    }

    std::string_view text_;
    size_t at_ = 0;
};

}  // namespace

JsonValue parse_json(std::string_view text) { return JsonParser(text).document(); }

}  // namespace pangea

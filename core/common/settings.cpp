#include "common/settings.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace pangea {
namespace {

bool has_range(const pangea_setting& s) { return s.min_value <= s.max_value; }

std::vector<std::string> split_choices(const char* choices) {
    std::vector<std::string> out;
    std::string_view rest = choices;
    while (true) {
        const size_t bar = rest.find('|');
        out.emplace_back(rest.substr(0, bar));
        if (bar == std::string_view::npos) break;
        rest.remove_prefix(bar + 1);
    }
    return out;
}

std::string format_number(double value) {
    if (value == std::trunc(value) && std::fabs(value) < 1e15)
        return std::to_string(static_cast<int64_t>(value));  // 1000000000, not 1e+09
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);  // shortest exact
    return std::string(buffer, result.ptr);
}

}  // namespace

const char* setting_type_name(pangea_setting_type type) {
    switch (type) {
        case PANGEA_SETTING_STRING: return "string";
        case PANGEA_SETTING_INT: return "integer";
        case PANGEA_SETTING_FLOAT: return "float";
        case PANGEA_SETTING_BOOL: return "boolean";
    }
    return "unknown type";
}

std::optional<SettingValue> parse_setting_text(const pangea_setting& setting,
                                               std::string_view text, std::string* error) {
    switch (setting.type) {
        case PANGEA_SETTING_STRING: {
            // Accept a TOML-quoted string as well as bare text.
            if (text.size() >= 2 && text.front() == '"' && text.back() == '"')
                text = text.substr(1, text.size() - 2);
            return SettingValue(std::string(text));
        }
        case PANGEA_SETTING_INT: {
            int64_t value = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
            if (ec == std::errc() && end == text.data() + text.size() && !text.empty())
                return SettingValue(value);
            *error = ec == std::errc::result_out_of_range ? "an integer that fits in 64 bits"
                                                          : "an integer";
            return std::nullopt;
        }
        case PANGEA_SETTING_FLOAT: {
            const std::string copy(text);
            char* end = nullptr;
            errno = 0;
            const double value = std::strtod(copy.c_str(), &end);
            if (!copy.empty() && end == copy.c_str() + copy.size() && errno == 0 &&
                std::isfinite(value))
                return SettingValue(value);
            *error = "a finite number";
            return std::nullopt;
        }
        case PANGEA_SETTING_BOOL:
            if (text == "true") return SettingValue(true);
            if (text == "false") return SettingValue(false);
            *error = "true or false";
            return std::nullopt;
    }
    *error = "a value of a known type";
    return std::nullopt;
}

std::string describe_setting_bounds(const pangea_setting& setting) {
    if ((setting.type == PANGEA_SETTING_INT || setting.type == PANGEA_SETTING_FLOAT) &&
        has_range(setting))
        return "[" + format_number(setting.min_value) + ", " + format_number(setting.max_value) +
               "]";
    if (setting.type == PANGEA_SETTING_STRING && setting.choices != nullptr) {
        std::string out;
        for (const auto& choice : split_choices(setting.choices))
            out += (out.empty() ? "" : " | ") + choice;
        return out;
    }
    return "";
}

std::string check_setting_value(const pangea_setting& setting, const SettingValue& value) {
    const std::string bounds = describe_setting_bounds(setting);
    switch (setting.type) {
        case PANGEA_SETTING_INT: {
            // long double holds every int64 exactly (on x86-64), so 2^53 + 1 is not 2^53.
            const long double v = static_cast<long double>(std::get<int64_t>(value));
            if (has_range(setting) && (v < setting.min_value || v > setting.max_value))
                return "an integer in " + bounds;
            return "";
        }
        case PANGEA_SETTING_FLOAT: {
            const double v = std::get<double>(value);
            if (!std::isfinite(v)) return "a finite number";
            if (has_range(setting) && (v < setting.min_value || v > setting.max_value))
                return "a number in " + bounds;
            return "";
        }
        case PANGEA_SETTING_STRING:
            if (setting.choices != nullptr) {
                for (const auto& choice : split_choices(setting.choices))
                    if (choice == std::get<std::string>(value)) return "";
                return "one of: " + bounds;
            }
            return "";
        case PANGEA_SETTING_BOOL: return "";
    }
    return "a value of a known type";
}

std::optional<SettingValue> parse_checked_setting(const pangea_setting& setting, std::string_view text,
                                                  std::string* expected) {
    auto value = parse_setting_text(setting, text, expected);
    if (!value) return std::nullopt;
    if (std::string misfit = check_setting_value(setting, *value); !misfit.empty()) {
        *expected = std::move(misfit);
        return std::nullopt;
    }
    return value;
}

std::string format_setting_value(const SettingValue& value) {
    struct Formatter {
        std::string operator()(const std::string& s) const {
            std::string out = "\"";
            for (char c : s) {
                if (c == '"' || c == '\\') out += '\\';
                if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {  // as \uXXXX: TOML allows only tab raw
                    char escaped[8];
                    std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
                    out += escaped;
                    continue;
                }
                out += c;
            }
            return out + "\"";
        }
        std::string operator()(int64_t v) const { return std::to_string(v); }
        std::string operator()(double v) const {
            std::string text = format_number(v);
            if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
            return text;
        }
        std::string operator()(bool v) const { return v ? "true" : "false"; }
    };
    return std::visit(Formatter{}, value);
}

std::string check_setting_declaration(const pangea_setting& setting) {
    if (setting.name == nullptr || setting.name[0] == '\0') return "a setting has no name";
    const std::string name = setting.name;
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return "setting '" + name + "': name must be lower_snake_case ([a-z0-9_])";
    if (name == "plugin" || name == "library")
        return "setting '" + name + "': the name is reserved for the host";
    uint32_t type;  // read as an integer: a plugin may send a value outside the enum
    std::memcpy(&type, &setting.type, sizeof type);
    if (type < PANGEA_SETTING_STRING || type > PANGEA_SETTING_BOOL)
        return "setting '" + name + "': unknown type " + std::to_string(type);
    if (setting.help == nullptr || setting.help[0] == '\0')
        return "setting '" + name + "': no help text";
    if (setting.default_value != nullptr) {
        std::string expected;
        if (!parse_checked_setting(setting, setting.default_value, &expected))
            return "setting '" + name + "': default \"" + setting.default_value + "\" is not " + expected;
    }
    return "";
}

}  // namespace pangea

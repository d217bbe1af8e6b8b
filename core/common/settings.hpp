// Typed setting values and their checks against a pangea_setting declaration. Shared by the
// manifest (core sections and plugin sections alike) and the plugin host's config lookups.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "pangea/plugin.h"

namespace pangea {

using SettingValue = std::variant<std::string, int64_t, double, bool>;

// A setting's value and where it came from ("default", "run.toml:4:9", "--set", "PANGEA_X").
struct ResolvedSetting {
    SettingValue value;
    std::string origin;
};

// name -> value, for one manifest section or one plugin instance.
using SettingMap = std::map<std::string, ResolvedSetting>;

const char* setting_type_name(pangea_setting_type type);  // "string", "integer", ...

// Parses text as the declared type ("42", "0.5", "true", any text for strings). Returns the
// value, or std::nullopt with *error saying what was expected.
std::optional<SettingValue> parse_setting_text(const pangea_setting& setting,
                                               std::string_view text, std::string* error);

// Checks a value of the right type against the declared range or choices. Returns "" when it
// fits, else what was expected ("an integer in [1, 1000]", "one of: min-max, sigma").
std::string check_setting_value(const pangea_setting& setting, const SettingValue& value);

// parse_setting_text() then check_setting_value(): the value, or std::nullopt with *expected
// saying what was wanted ("an integer", "an integer in [1, 9]").
std::optional<SettingValue> parse_checked_setting(const pangea_setting& setting, std::string_view text,
                                                  std::string* expected);

// TOML text of a value: strings quoted (control characters escaped), floats with a decimal point.
std::string format_setting_value(const SettingValue& value);

// The declared range or choices as text ("[1, 1000]", "min-max | sigma"), or "".
std::string describe_setting_bounds(const pangea_setting& setting);

// Checks a declaration itself (name, type, help, default parses and fits). Returns "" or what
// is wrong with it.
std::string check_setting_declaration(const pangea_setting& setting);

}  // namespace pangea

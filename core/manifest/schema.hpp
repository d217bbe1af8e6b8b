// The manifest's sections. Core sections declare their keys with the same pangea_setting
// records that plugins use, so one validator serves both. Plugin sections (one per plugin kind)
// hold `plugin`, an optional `library`, and the chosen plugin's own settings.
#pragma once

#include <span>
#include <string_view>

#include "pangea/plugin.h"

namespace pangea {

struct CoreSection {
    const char* name;
    const char* help;
    std::span<const pangea_setting> settings;
};

std::span<const CoreSection> core_sections();
const CoreSection* find_core_section(std::string_view name);

// Every section name, core and plugin, in manifest order ("run, model, ...").
std::string all_section_names();

}  // namespace pangea

// The core's log: one line per message on stderr, with time, level and component.
#pragma once

#include <string_view>

#include "pangea/plugin.h"

namespace pangea {

// Messages below this level are dropped. Default: PANGEA_LOG_INFO.
void set_log_level(pangea_log_level level);
pangea_log_level log_level();

// Parses "debug" | "info" | "warn" | "error"; returns false for anything else.
bool parse_log_level(std::string_view text, pangea_log_level* out);

void log(pangea_log_level level, std::string_view component, std::string_view message);

}  // namespace pangea

#include "common/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace pangea {
namespace {

std::atomic<int> g_level{PANGEA_LOG_INFO};
std::mutex g_write_mutex;  // keeps lines from different threads whole

const char* level_name(pangea_log_level level) {
    switch (level) {
        case PANGEA_LOG_DEBUG: return "debug";
        case PANGEA_LOG_INFO: return "info";
        case PANGEA_LOG_WARN: return "warn";
        case PANGEA_LOG_ERROR: return "error";
    }
    return "?";
}

}  // namespace

void set_log_level(pangea_log_level level) { g_level = level; }
pangea_log_level log_level() { return static_cast<pangea_log_level>(g_level.load()); }

bool parse_log_level(std::string_view text, pangea_log_level* out) {
    for (auto level : {PANGEA_LOG_DEBUG, PANGEA_LOG_INFO, PANGEA_LOG_WARN, PANGEA_LOG_ERROR}) {
        if (text == level_name(level)) {
            *out = level;
            return true;
        }
    }
    return false;
}

void log(pangea_log_level level, std::string_view component, std::string_view message) {
    if (level < g_level.load()) return;
    const auto now = std::chrono::system_clock::now();
    const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                            now.time_since_epoch()).count() % 1000;
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%H:%M:%S", &utc);
    std::lock_guard<std::mutex> lock(g_write_mutex);
    std::fprintf(stderr, "%s.%03d %-5s [%.*s] %.*s\n", stamp, static_cast<int>(millis),
                 level_name(level), static_cast<int>(component.size()), component.data(),
                 static_cast<int>(message.size()), message.data());
}

}  // namespace pangea

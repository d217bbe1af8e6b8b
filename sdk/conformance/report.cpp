#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <iostream>
#include <random>

#include "conformance.hpp"

namespace pangea::conformance {
namespace {

// The check in progress, for a plugin that crashes the runner: the crash is still reported as
// the check's failure before the process dies (the compress checks put inaccessible pages right
// after what they hand a plugin, so reading past it crashes).
char running[1024];
volatile sig_atomic_t running_length = 0;
constexpr int kCrashSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
struct sigaction previous_actions[sizeof kCrashSignals / sizeof kCrashSignals[0]];

void write_all(const char* text, size_t size) {
    while (size > 0) {
        const ssize_t done = write(STDOUT_FILENO, text, size);
        if (done <= 0) return;
        text += done;
        size -= static_cast<size_t>(done);
    }
}

void on_crash(int signal_number) {
    if (running_length > 0) {
        char tail[] = ": crashed with signal 00\n";
        tail[sizeof tail - 4] = static_cast<char>('0' + signal_number / 10 % 10);
        tail[sizeof tail - 3] = static_cast<char>('0' + signal_number % 10);
        write_all("  [FAIL] ", 9);
        write_all(running, static_cast<size_t>(running_length));
        write_all(tail, sizeof tail - 1);
        running_length = 0;
    }
    // Hand the signal to whoever had it before (the default: die; a sanitizer: its report).
    for (size_t i = 0; i < sizeof kCrashSignals / sizeof kCrashSignals[0]; ++i)
        if (kCrashSignals[i] == signal_number) sigaction(signal_number, &previous_actions[i], nullptr);
    raise(signal_number);
}

void install_crash_report() {
    static bool installed = false;
    if (installed) return;
    installed = true;
    // An alternate stack, so that a stack overflow is reported too (unless a sanitizer set one).
    static char alternate_stack[1 << 16];
    stack_t stack{};
    if (sigaltstack(nullptr, &stack) == 0 && (stack.ss_flags & SS_DISABLE) != 0) {
        stack.ss_sp = alternate_stack;
        stack.ss_size = sizeof alternate_stack;
        stack.ss_flags = 0;
        sigaltstack(&stack, nullptr);
    }
    struct sigaction action {};
    action.sa_handler = on_crash;
    action.sa_flags = SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof kCrashSignals / sizeof kCrashSignals[0]; ++i)
        sigaction(kCrashSignals[i], &action, &previous_actions[i]);
}

}  // namespace

Report::Report(std::map<std::string, std::string> skips) : skips_(std::move(skips)) { install_crash_report(); }

std::vector<float> random_normal(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> out(n);
    for (auto& v : out) v = normal(rng);
    return out;
}

void Report::run(const std::string& name, const std::function<void()>& check) {
    if (const auto found = skips_.find(name); found != skips_.end()) {
        used_skips_.insert(name);
        skip(name, found->second);
        return;
    }
    const size_t length = std::min(name.size(), sizeof running);
    std::memcpy(running, name.data(), length);
    running_length = static_cast<sig_atomic_t>(length);
    try {
        check();
        running_length = 0;
        ++passed_;
        std::cout << "  [pass] " << name << "\n";
    } catch (const std::exception& e) {
        running_length = 0;
        ++failed_;
        std::cout << "  [FAIL] " << name << ": " << e.what() << "\n";
    }
    std::cout.flush();
}

std::vector<std::string> Report::unused_skips() const {
    std::vector<std::string> out;
    for (const auto& [name, reason] : skips_)
        if (used_skips_.count(name) == 0) out.push_back(name);
    return out;
}

void Report::skip(const std::string& name, const std::string& reason) {
    ++skipped_;
    std::cout << "  [skip] " << name << ": " << reason << "\n";
}

}  // namespace pangea::conformance

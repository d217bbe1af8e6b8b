#include <exception>
#include <iostream>
#include <random>

#include "conformance.hpp"

namespace pangea::conformance {

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
    try {
        check();
        ++passed_;
        std::cout << "  [pass] " << name << "\n";
    } catch (const std::exception& e) {
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

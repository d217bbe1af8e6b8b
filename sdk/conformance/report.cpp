#include <exception>
#include <iostream>

#include "conformance.hpp"

namespace pangea::conformance {

void Report::run(const std::string& name, const std::function<void()>& check) {
    if (const auto found = skips_.find(name); found != skips_.end()) {
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

void Report::skip(const std::string& name, const std::string& reason) {
    ++skipped_;
    std::cout << "  [skip] " << name << ": " << reason << "\n";
}

}  // namespace pangea::conformance

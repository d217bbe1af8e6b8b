// A shared library opened with dlopen(RTLD_NOW | RTLD_LOCAL) and closed when the last owner goes.
// The plugin host and pangea-plugin-check need nothing more than this of a loader, so they stay
// free of any dependency beyond the C++ library (the SDK builds with a compiler and CMake alone).
#pragma once

#include <dlfcn.h>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace pangea {

class SharedLibrary {
public:
    // Throws std::runtime_error with dlerror()'s text when the file cannot be loaded.
    explicit SharedLibrary(const std::filesystem::path& path)
        : handle_(dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL), &close) {
        if (handle_ == nullptr) {
            const char* why = dlerror();
            throw std::runtime_error(why ? why : "dlopen failed");
        }
    }

    // The address of an exported symbol, or nullptr.
    void* symbol(const std::string& name) const { return dlsym(handle_.get(), name.c_str()); }

    template <class Function>
    Function function(const std::string& name) const {
        return reinterpret_cast<Function>(symbol(name));
    }

private:
    static void close(void* handle) {
        if (handle != nullptr) dlclose(handle);
    }

    std::unique_ptr<void, void (*)(void*)> handle_;
};

}  // namespace pangea

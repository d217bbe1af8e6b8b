#include "common/files.hpp"

#include <fstream>

namespace pangea {

void write_file_atomically(const std::filesystem::path& path, const std::string& text) {
    const std::filesystem::path temporary = path.string() + ".tmp";
    {
        std::ofstream out(temporary, std::ios::trunc);
        out << text << "\n";
        if (!out.flush()) return;
    }
    std::error_code ignored;
    std::filesystem::rename(temporary, path, ignored);
}

}  // namespace pangea

#include "elf_symbols.hpp"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace pangea::conformance {
namespace {

template <class T>
T read_at(const std::vector<char>& file, uint64_t offset, const std::string& what) {
    if (offset > file.size() || file.size() - offset < sizeof(T)) throw std::runtime_error(what + " lies past the end");
    T out;
    std::memcpy(&out, file.data() + offset, sizeof out);
    return out;
}

}  // namespace

std::vector<std::string> exported_symbols(const std::filesystem::path& library) {
    std::ifstream in(library, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + library.string());
    const std::vector<char> file{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const std::string where = library.string() + ": ";
    const auto header = read_at<Elf64_Ehdr>(file, 0, where + "the ELF header");
    if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64)
        throw std::runtime_error(where + "not a 64-bit ELF file");
    std::vector<std::string> names;
    for (uint16_t i = 0; i < header.e_shnum; ++i) {
        const auto section =
            read_at<Elf64_Shdr>(file, header.e_shoff + uint64_t(i) * header.e_shentsize, where + "a section header");
        if (section.sh_type != SHT_DYNSYM || section.sh_entsize < sizeof(Elf64_Sym)) continue;
        const auto strings = read_at<Elf64_Shdr>(
            file, header.e_shoff + uint64_t(section.sh_link) * header.e_shentsize, where + "the string table header");
        for (uint64_t at = section.sh_entsize; at + sizeof(Elf64_Sym) <= section.sh_size; at += section.sh_entsize) {
            const auto symbol = read_at<Elf64_Sym>(file, section.sh_offset + at, where + "a symbol");
            const unsigned bind = ELF64_ST_BIND(symbol.st_info);
            if (symbol.st_shndx == SHN_UNDEF || (bind != STB_GLOBAL && bind != STB_WEAK)) continue;
            if (symbol.st_name >= strings.sh_size || strings.sh_offset + strings.sh_size > file.size())
                throw std::runtime_error(where + "a symbol name lies outside its string table");
            const char* name = file.data() + strings.sh_offset + symbol.st_name;
            names.emplace_back(name, strnlen(name, strings.sh_size - symbol.st_name));
        }
    }
    return names;
}

}  // namespace pangea::conformance

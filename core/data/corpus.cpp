#include "data/corpus.hpp"

#include <array>

#include "data/token_shard.hpp"

namespace pangea {
namespace {

// splitmix64: a small, fixed generator, so the corpus is the same with every standard library.
class Generator {
public:
    explicit Generator(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    size_t below(size_t n) { return static_cast<size_t>(next() % n); }
    template <size_t N>
    const char* pick(const std::array<const char*, N>& words) { return words[below(N)]; }

private:
    uint64_t state_;
};

constexpr std::array<const char*, 8> kDeterminers = {"the", "a", "one", "every", "that", "this", "some", "no"};
constexpr std::array<const char*, 16> kAdjectives = {"small", "old", "quiet", "bright", "cold", "green", "tall",
                                                     "slow", "brave", "tired", "happy", "dark", "warm", "young",
                                                     "strange", "wise"};
constexpr std::array<const char*, 16> kNouns = {"fox", "river", "town", "child", "ship", "garden", "teacher",
                                                "mountain", "bird", "farmer", "window", "road", "king", "cat",
                                                "forest", "letter"};
constexpr std::array<const char*, 12> kVerbs = {"sees", "follows", "finds", "carries", "builds", "watches",
                                                "remembers", "crosses", "paints", "visits", "helps", "calls"};
constexpr std::array<const char*, 8> kPrepositions = {"near", "under", "behind", "beside", "across", "inside",
                                                      "above", "past"};
constexpr std::array<const char*, 6> kTypes = {"int", "long", "float", "double", "size_t", "char"};
constexpr std::array<const char*, 10> kNames = {"total", "count", "value", "index", "width", "height", "sum",
                                                "limit", "offset", "result"};
constexpr std::array<const char*, 7> kDays = {"monday", "tuesday", "wednesday", "thursday", "friday",
                                              "saturday", "sunday"};

std::string capitalized(std::string word) {
    if (!word.empty() && word[0] >= 'a' && word[0] <= 'z') word[0] = static_cast<char>(word[0] - 'a' + 'A');
    return word;
}

void prose(Generator& g, std::string* out) {
    const size_t sentences = 2 + g.below(5);
    for (size_t s = 0; s < sentences; ++s) {
        std::string sentence = capitalized(g.pick(kDeterminers));
        sentence += std::string(" ") + g.pick(kAdjectives) + " " + g.pick(kNouns) + " " + g.pick(kVerbs) + " " +
                    g.pick(kDeterminers) + " " + g.pick(kNouns);
        if (g.below(2) == 0)
            sentence += std::string(" ") + g.pick(kPrepositions) + " the " + g.pick(kAdjectives) + " " + g.pick(kNouns);
        *out += sentence + (s + 1 == sentences ? ".\n" : ". ");
    }
}

void code(Generator& g, std::string* out) {
    const char* type = g.pick(kTypes);
    const char* name = g.pick(kNames);
    const size_t limit = 2 + g.below(30);
    *out += std::string(type) + " " + name + " = " + std::to_string(g.below(10)) + ";\n";
    *out += "for (size_t i = 0; i < " + std::to_string(limit) + "; ++i) {\n";
    *out += std::string("    ") + name + (g.below(2) ? " += " : " -= ") + "values[i];\n}\n";
    *out += std::string("return ") + name + ";\n";
}

void arithmetic(Generator& g, std::string* out) {
    const size_t lines = 3 + g.below(4);
    for (size_t i = 0; i < lines; ++i) {
        const size_t a = g.below(100), b = g.below(100);
        switch (g.below(3)) {
            case 0: *out += std::to_string(a) + " + " + std::to_string(b) + " = " + std::to_string(a + b) + "\n"; break;
            case 1: *out += std::to_string(a + b) + " - " + std::to_string(b) + " = " + std::to_string(a) + "\n"; break;
            default: *out += std::to_string(a % 13) + " * " + std::to_string(b % 13) + " = " +
                             std::to_string((a % 13) * (b % 13)) + "\n";
        }
    }
}

void lists(Generator& g, std::string* out) {
    const size_t length = 4 + g.below(6);
    if (g.below(2) == 0) {
        size_t start = g.below(7);
        for (size_t i = 0; i < length; ++i) *out += std::string(i ? ", " : "") + kDays[(start + i) % 7];
    } else {
        const size_t start = g.below(90), step = 1 + g.below(5);
        for (size_t i = 0; i < length; ++i) *out += (i ? ", " : "") + std::to_string(start + i * step);
    }
    *out += "\n";
}

using Writer = void (*)(Generator&, std::string*);
struct BuiltinSource {
    const char* name;
    Writer write;
    uint64_t seed;
};
constexpr BuiltinSource kSources[] = {
    {"prose", prose, 1}, {"code", code, 2}, {"arithmetic", arithmetic, 3}, {"lists", lists, 4}};

}  // namespace

void byte_tokenize(std::string_view document, std::vector<uint32_t>* tokens) {
    for (unsigned char c : document) tokens->push_back(c);
    tokens->push_back(kDocumentEnd);
}

std::string byte_detokenize(const std::vector<int32_t>& tokens) {
    std::string text;
    for (int32_t t : tokens) text += t == static_cast<int32_t>(kDocumentEnd) ? '\n' : t >= 0 && t < 256 ? char(t) : '?';
    return text;
}

const std::vector<std::string>& builtin_source_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> out;
        for (const auto& s : kSources) out.emplace_back(s.name);
        return out;
    }();
    return names;
}

std::string builtin_text(std::string_view name, size_t bytes) {
    for (const auto& source : kSources) {
        if (name != source.name) continue;
        Generator g(source.seed);
        std::string text;
        text.reserve(bytes + 256);
        while (text.size() < bytes) {
            source.write(g, &text);
            text += "\n";  // a blank line ends the document
        }
        return text;
    }
    std::string known;
    for (const auto& n : builtin_source_names()) known += (known.empty() ? "" : ", ") + n;
    throw DataError("unknown built-in corpus source '" + std::string(name) + "'; built-in sources are: " + known);
}

}  // namespace pangea

#include "data/tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <unordered_map>

#include "data/corpus.hpp"
#include "data/token_shard.hpp"

namespace pangea {
namespace {

using Specials = std::map<std::string, uint32_t>;

// ---- the byte tokenizer -------------------------------------------------------------------------

class ByteTokenizer final : public Tokenizer {
public:
    void encode(std::string_view text, std::vector<uint32_t>* ids) const override {
        for (unsigned char c : text) ids->push_back(c);
    }
    uint32_t vocab() const override { return kByteVocab; }
    uint32_t document_end() const override { return kDocumentEnd; }
    std::string describe() const override { return "byte tokenizer, vocabulary 257, documents end with 256"; }
};

// ---- pre-tokenization ---------------------------------------------------------------------------

// The regex that cuts text into pieces before BPE, compiled by PCRE2 with Unicode properties and
// JIT. A compiled pattern is shared; each call to for_each_piece() has its own match data.
class PreTokenizer {
public:
    PreTokenizer(const std::string& pattern, const std::string& where) {
        int code = 0;
        PCRE2_SIZE offset = 0;
        code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                  &code, &offset, nullptr));
        if (!code_) throw DataError(where + ": the pre-tokenizer regex does not compile at offset " +
                                    std::to_string(offset) + ": " + message(code));
        pcre2_jit_compile(code_.get(), PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
    }

    // Calls piece(begin, end) for each match, in order. Throws DataError on invalid UTF-8.
    template <typename Piece>
    void for_each_piece(std::string_view text, Piece&& piece) const {
        const std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
            pcre2_match_data_create_from_pattern(code_.get(), nullptr), &pcre2_match_data_free);
        const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
        uint32_t options = 0;  // the first call checks the whole text's UTF-8; later ones need not
        for (size_t at = 0; at < text.size();) {
            const int found = pcre2_match(code_.get(), subject, text.size(), at, options, match.get(), nullptr);
            if (found == PCRE2_ERROR_NOMATCH) {
                piece(at, text.size());  // no pattern leaves text unmatched; if one does, keep it
                return;
            }
            if (found < 0) {
                if (found <= PCRE2_ERROR_UTF8_ERR1 && found >= PCRE2_ERROR_UTF8_ERR21)
                    throw InvalidText("invalid UTF-8 at byte " + std::to_string(pcre2_get_startchar(match.get())) +
                                          " (" + message(found) + ")", pcre2_get_startchar(match.get()));
                throw DataError("the pre-tokenizer regex failed at byte " + std::to_string(at) + ": " + message(found));
            }
            options = PCRE2_NO_UTF_CHECK;
            const PCRE2_SIZE* span = pcre2_get_ovector_pointer(match.get());
            if (span[0] > at) piece(at, span[0]);  // text between matches is a piece of its own
            if (span[1] == span[0]) {  // an empty match: step over one character
                size_t next = span[0] + 1;
                while (next < text.size() && (static_cast<unsigned char>(text[next]) & 0xc0) == 0x80) ++next;
                piece(span[0], next);
                at = next;
                continue;
            }
            piece(span[0], span[1]);
            at = span[1];
        }
    }

private:
    static std::string message(int code) {
        PCRE2_UCHAR buffer[256];
        pcre2_get_error_message(code, buffer, sizeof buffer);
        return reinterpret_cast<const char*>(buffer);
    }
    struct FreeCode {
        void operator()(pcre2_code* code) const { pcre2_code_free(code); }
    };
    std::unique_ptr<pcre2_code, FreeCode> code_;
};

// ---- byte-pair encoding -------------------------------------------------------------------------

// Byte-level BPE: a piece starts as one token per byte, and the adjacent pair with the lowest
// merge rank (the leftmost of equals) is merged until no adjacent pair has a merge. tiktoken ranks
// a pair by its concatenation's rank; tokenizer.json by the merge's line; both end in a table
// (left id, right id) -> (rank, merged id).
class BytePairEncoder final : public Tokenizer {
public:
    struct Merge {
        uint32_t rank;
        uint32_t merged;
    };

    BytePairEncoder(std::vector<std::string> token_bytes, std::unordered_map<uint64_t, Merge> merges,
                    bool whole_piece_first, const std::string& pattern, const Specials& specials,
                    const std::string& document_end, std::string source)
        : token_bytes_(std::move(token_bytes)), merges_(std::move(merges)), whole_piece_first_(whole_piece_first),
          pre_tokenizer_(pattern, source), source_(std::move(source)) {
        byte_id_.fill(kNone);
        id_of_.reserve(token_bytes_.size());
        for (uint32_t id = 0; id < token_bytes_.size(); ++id) {
            const std::string& bytes = token_bytes_[id];
            if (bytes.empty()) continue;  // an id the vocabulary leaves unused
            id_of_.emplace(bytes, id);
            if (bytes.size() == 1) byte_id_[static_cast<unsigned char>(bytes[0])] = id;
        }
        for (int b = 0; b < 256; ++b)
            if (byte_id_[b] == kNone) {
                char hex[8];
                std::snprintf(hex, sizeof hex, "0x%02x", b);
                throw DataError(source_ + ": byte " + hex + " has no token of its own: byte-level BPE needs all 256");
            }
        pick_document_end(specials, document_end);
        // The shards record the ids they may hold: the ranks and the separator (a preset's other
        // special tokens never appear in ordinary text).
        vocab_ = std::max(static_cast<uint32_t>(token_bytes_.size()), document_end_ + 1);
    }

    void encode(std::string_view text, std::vector<uint32_t>* ids) const override {
        std::vector<uint32_t> parts;
        pre_tokenizer_.for_each_piece(text, [&](size_t begin, size_t end) {
            const std::string_view piece = text.substr(begin, end - begin);
            if (whole_piece_first_ || piece.size() == 1)
                if (const auto found = id_of_.find(std::string(piece)); found != id_of_.end()) {
                    ids->push_back(found->second);
                    return;
                }
            parts.clear();
            for (unsigned char c : piece) parts.push_back(byte_id_[c]);
            merge(parts);
            ids->insert(ids->end(), parts.begin(), parts.end());
        });
    }

    uint32_t vocab() const override { return vocab_; }
    uint32_t document_end() const override { return document_end_; }
    std::string describe() const override {
        return source_ + ", vocabulary " + std::to_string(vocab_) + ", documents end with " + document_end_name_ +
               " (" + std::to_string(document_end_) + ")";
    }

private:
    static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
    static uint64_t key(uint32_t left, uint32_t right) { return uint64_t{left} << 32 | right; }

    uint32_t rank_of(uint32_t left, uint32_t right) const {
        const auto found = merges_.find(key(left, right));
        return found == merges_.end() ? kNone : found->second.rank;
    }

    // Merges in place. rank[i] is the rank of the pair (parts[i], parts[i + 1]); after a merge
    // only the two pairs touching the new part change.
    void merge(std::vector<uint32_t>& parts) const {
        if (parts.size() < 2) return;
        std::vector<uint32_t> rank(parts.size() - 1);
        for (size_t i = 0; i + 1 < parts.size(); ++i) rank[i] = rank_of(parts[i], parts[i + 1]);
        while (!rank.empty()) {
            const auto lowest = std::min_element(rank.begin(), rank.end());
            if (*lowest == kNone) break;
            const size_t i = static_cast<size_t>(lowest - rank.begin());
            parts[i] = merges_.at(key(parts[i], parts[i + 1])).merged;
            parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(i) + 1);
            rank.erase(rank.begin() + static_cast<std::ptrdiff_t>(i));
            if (i < rank.size()) rank[i] = rank_of(parts[i], parts[i + 1]);
            if (i > 0) rank[i - 1] = rank_of(parts[i - 1], parts[i]);
        }
    }

    void pick_document_end(const Specials& specials, const std::string& wanted) {
        if (const size_t equals = wanted.rfind('='); equals != std::string::npos && equals > 0) {
            document_end_name_ = wanted.substr(0, equals);
            const std::string id = wanted.substr(equals + 1);
            char* end = nullptr;
            const unsigned long long value = std::strtoull(id.c_str(), &end, 10);
            if (id.empty() || *end != '\0' || value >= (1ull << 31))
                throw DataError("--document-end " + wanted + ": the id after '=' is not a number below 2^31");
            document_end_ = static_cast<uint32_t>(value);
            return;
        }
        for (const std::string& name : wanted.empty() ? std::vector<std::string>{"<|endoftext|>", "<|end_of_text|>", "</s>"}
                                                      : std::vector<std::string>{wanted})
            if (const auto found = specials.find(name); found != specials.end()) {
                document_end_name_ = name;
                document_end_ = found->second;
                return;
            }
        std::string known;
        for (const auto& [name, id] : specials) known += (known.empty() ? "" : ", ") + name;
        throw DataError(source_ + ": " + (wanted.empty() ? "no <|endoftext|>, <|end_of_text|> or </s>" : "no " + wanted) +
                        " among its special tokens (" + (known.empty() ? "none" : known) +
                        "): say which token ends a document with --document-end NAME or NAME=ID");
    }

    std::vector<std::string> token_bytes_;  // by id; empty: unused
    std::unordered_map<std::string, uint32_t> id_of_;
    std::array<uint32_t, 256> byte_id_{};
    std::unordered_map<uint64_t, Merge> merges_;
    bool whole_piece_first_;  // a piece that is a token is that token (tiktoken; tokenizer.json's ignore_merges)
    PreTokenizer pre_tokenizer_;
    std::string source_;
    uint32_t vocab_ = 0;
    uint32_t document_end_ = 0;
    std::string document_end_name_;
};

// ---- tiktoken ranks files -----------------------------------------------------------------------

constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// English contractions, cased letter by letter as js-tiktoken writes them: (?i:) would also take
// Unicode case variants (U+017F for s).
#define PANGEA_CONTRACTIONS "(?:'s|'S|'t|'T|'re|'rE|'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|'d|'D)"
constexpr const char* kCl100kPattern =
    PANGEA_CONTRACTIONS R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Meta's Llama 3 pattern: cl100k's with (?i:) contractions.
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kO200kPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+)" PANGEA_CONTRACTIONS
    R"(?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*)" PANGEA_CONTRACTIONS
    R"(?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
#undef PANGEA_CONTRACTIONS

struct Preset {
    const char* pattern;
    Specials specials;
};

Specials llama3_specials() {
    // Meta's Llama 3 tokenizer: 256 special tokens after the 128000 ranks.
    const char* named[] = {"<|begin_of_text|>",  "<|end_of_text|>",   "<|reserved_special_token_0|>",
                           "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
                           "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
                           "<|reserved_special_token_4|>", "<|eot_id|>"};
    Specials specials;
    uint32_t id = 128000;
    for (const char* name : named) specials.emplace(name, id++);
    for (int reserved = 5; id < 128256; ++reserved) specials.emplace("<|reserved_special_token_" + std::to_string(reserved) + "|>", id++);
    return specials;
}

const std::map<std::string, Preset>& presets() {
    static const std::map<std::string, Preset> table = {
        {"gpt2", {kGpt2Pattern, {{"<|endoftext|>", 50256}}}},
        {"cl100k", {kCl100kPattern, {{"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259},
                                     {"<|fim_suffix|>", 100260}, {"<|endofprompt|>", 100276}}}},
        {"o200k", {kO200kPattern, {{"<|endoftext|>", 199999}, {"<|endofprompt|>", 200018}}}},
        {"llama3", {kLlama3Pattern, llama3_specials()}},
    };
    return table;
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw DataError(path.string() + ": cannot read the tokenizer file");
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

bool base64_decode(std::string_view text, std::string* out) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    while (!text.empty() && text.back() == '=') text.remove_suffix(1);
    if (text.size() % 4 == 1) return false;
    out->clear();
    uint32_t bits = 0;
    int count = 0;
    for (char c : text) {
        const int v = value(c);
        if (v < 0) return false;
        bits = bits << 6 | static_cast<uint32_t>(v);
        if (++count == 4) {
            out->push_back(char(bits >> 16));
            out->push_back(char(bits >> 8));
            out->push_back(char(bits));
            bits = 0;
            count = 0;
        }
    }
    if (count == 2) out->push_back(char(bits >> 4));
    if (count == 3) {
        out->push_back(char(bits >> 10));
        out->push_back(char(bits >> 2));
    }
    return true;
}

// Every split of every token into two tokens, ranked by the token's rank: tiktoken merges a pair
// whenever its concatenation has a rank.
std::unordered_map<uint64_t, BytePairEncoder::Merge> merges_from_ranks(const std::vector<std::string>& token_bytes,
                                                                        const std::unordered_map<std::string, uint32_t>& id_of) {
    std::unordered_map<uint64_t, BytePairEncoder::Merge> merges;
    for (uint32_t id = 0; id < token_bytes.size(); ++id) {
        const std::string& bytes = token_bytes[id];
        for (size_t cut = 1; cut < bytes.size(); ++cut) {
            const auto left = id_of.find(bytes.substr(0, cut));
            const auto right = id_of.find(bytes.substr(cut));
            if (left != id_of.end() && right != id_of.end())
                merges.emplace(uint64_t{left->second} << 32 | right->second, BytePairEncoder::Merge{id, id});
        }
    }
    return merges;
}

std::unique_ptr<Tokenizer> load_tiktoken(const TokenizerOptions& options) {
    const std::string where = options.file;
    const std::string text = read_file(options.file);
    std::vector<std::string> token_bytes;
    std::unordered_map<std::string, uint32_t> id_of;
    size_t line_number = 0;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        ++line_number;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        const auto bad = [&](const std::string& why) {
            return DataError(where + ": line " + std::to_string(line_number) + ": " + why +
                             " (a tiktoken ranks file has a base64 token and its rank per line)");
        };
        const size_t space = line.find(' ');
        if (space == std::string::npos) throw bad("no space between token and rank");
        std::string bytes;
        if (!base64_decode(std::string_view(line).substr(0, space), &bytes) || bytes.empty())
            throw bad("the token is not base64");
        const std::string rank_text = line.substr(space + 1);
        char* end = nullptr;
        const unsigned long long rank = std::strtoull(rank_text.c_str(), &end, 10);
        if (rank_text.empty() || *end != '\0' || rank >= (1ull << 31)) throw bad("the rank is not a number below 2^31");
        if (rank >= token_bytes.size()) token_bytes.resize(rank + 1);
        if (!token_bytes[rank].empty()) throw bad("rank " + rank_text + " appears twice");
        if (!id_of.emplace(bytes, static_cast<uint32_t>(rank)).second) throw bad("the token appears twice");
        token_bytes[rank] = std::move(bytes);
    }
    if (token_bytes.empty()) throw DataError(where + ": no tokens in the ranks file");

    Specials specials;
    std::string pattern = options.pattern;
    std::string described = "preset " + options.pattern;
    if (const auto preset = presets().find(options.pattern); preset != presets().end()) {
        pattern = preset->second.pattern;
        specials = preset->second.specials;
    } else {
        described = "its own pattern";
    }
    auto merges = merges_from_ranks(token_bytes, id_of);
    return std::make_unique<BytePairEncoder>(std::move(token_bytes), std::move(merges), /*whole_piece_first=*/true,
                                             pattern, specials, options.document_end,
                                             "tiktoken " + where + " (" + described + ")");
}

// ---- Hugging Face tokenizer.json ----------------------------------------------------------------

// GPT-2's byte-level alphabet: each byte is a printable character in tokenizer.json's strings.
std::unordered_map<uint32_t, unsigned char> byte_of_code_point() {
    std::unordered_map<uint32_t, unsigned char> table;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        table.emplace(printable ? static_cast<uint32_t>(b) : next++, static_cast<unsigned char>(b));
    }
    return table;
}

// A tokenizer.json string (UTF-8 of byte-level characters) as the bytes it stands for.
bool byte_level_bytes(const std::string& text, std::string* out) {
    static const auto table = byte_of_code_point();
    out->clear();
    for (size_t i = 0; i < text.size();) {
        const auto c = static_cast<unsigned char>(text[i]);
        uint32_t point;
        size_t length;
        if (c < 0x80) point = c, length = 1;
        else if ((c & 0xe0) == 0xc0) point = c & 0x1fu, length = 2;
        else if ((c & 0xf0) == 0xe0) point = c & 0x0fu, length = 3;
        else return false;
        if (i + length > text.size()) return false;
        for (size_t k = 1; k < length; ++k) point = point << 6 | (static_cast<unsigned char>(text[i + k]) & 0x3fu);
        const auto found = table.find(point);
        if (found == table.end()) return false;
        out->push_back(static_cast<char>(found->second));
        i += length;
    }
    return true;
}

std::unique_ptr<Tokenizer> load_tokenizer_json(const TokenizerOptions& options) {
    const std::string where = options.file;
    nlohmann::json doc;
    try {
        doc = nlohmann::json::parse(read_file(options.file));
    } catch (const nlohmann::json::exception& e) {
        throw DataError(where + ": not JSON: " + e.what());
    }
    const auto refuse = [&](const std::string& why) {
        return DataError(where + ": " + why + " (Pangea reads byte-level BPE tokenizer.json files: GPT-2, Llama 3)");
    };
    try {
        const auto& model = doc.at("model");
        if (model.value("type", std::string("BPE")) != "BPE") throw refuse("model.type is " + model.at("type").dump());
        if (doc.contains("normalizer") && !doc["normalizer"].is_null()) throw refuse("it has a normalizer");

        // The pre-tokenizer: ByteLevel with GPT-2's regex, or a Split regex followed by ByteLevel.
        std::string pattern;
        const auto& pre = doc.at("pre_tokenizer");
        auto byte_level = [&](const nlohmann::json& step, bool regex_allowed) {
            if (step.value("add_prefix_space", false)) throw refuse("ByteLevel add_prefix_space is on");
            if (step.value("use_regex", true)) {
                if (!regex_allowed) throw refuse("ByteLevel with use_regex after a Split");
                pattern = kGpt2Pattern;
            }
        };
        auto split = [&](const nlohmann::json& step) {
            if (step.value("behavior", std::string("Isolated")) != "Isolated" || step.value("invert", false))
                throw refuse("a Split pre-tokenizer other than behavior Isolated, invert false");
            pattern = step.at("pattern").at("Regex").get<std::string>();
        };
        const std::string pre_type = pre.at("type").get<std::string>();
        if (pre_type == "ByteLevel") {
            byte_level(pre, true);
        } else if (pre_type == "Sequence") {
            const auto& steps = pre.at("pretokenizers");
            if (steps.size() != 2 || steps[0].at("type") != "Split" || steps[1].at("type") != "ByteLevel")
                throw refuse("a pre-tokenizer sequence other than Split then ByteLevel");
            split(steps[0]);
            byte_level(steps[1], false);
        } else {
            throw refuse("pre_tokenizer.type is " + pre_type);
        }

        std::vector<std::string> token_bytes;
        std::string bytes;
        for (const auto& [text, id_json] : model.at("vocab").items()) {
            const uint64_t id = id_json.get<uint64_t>();
            if (id >= (1u << 31)) throw refuse("vocab id " + std::to_string(id) + " of " + text + " is above 2^31");
            if (!byte_level_bytes(text, &bytes)) throw refuse("vocab entry " + nlohmann::json(text).dump() + " is not byte-level");
            if (id >= token_bytes.size()) token_bytes.resize(id + 1);
            if (!token_bytes[id].empty()) throw refuse("vocab id " + std::to_string(id) + " appears twice");
            token_bytes[id] = bytes;
        }
        std::unordered_map<std::string, uint32_t> id_of;
        for (uint32_t id = 0; id < token_bytes.size(); ++id)
            if (!token_bytes[id].empty()) id_of.emplace(token_bytes[id], id);

        std::unordered_map<uint64_t, BytePairEncoder::Merge> merges;
        const auto& merge_list = model.at("merges");
        for (uint32_t rank = 0; rank < merge_list.size(); ++rank) {
            const auto& entry = merge_list[rank];
            std::string left, right;
            if (entry.is_string()) {  // "left right"
                const std::string text = entry.get<std::string>();
                const size_t space = text.find(' ');
                if (space == std::string::npos) throw refuse("merge " + std::to_string(rank) + " has no space");
                left = text.substr(0, space), right = text.substr(space + 1);
            } else {  // ["left", "right"]
                left = entry.at(0).get<std::string>(), right = entry.at(1).get<std::string>();
            }
            std::string left_bytes, right_bytes;
            const auto find = [&](const std::string& text, std::string* b) {
                const auto found = byte_level_bytes(text, b) ? id_of.find(*b) : id_of.end();
                if (found == id_of.end()) throw refuse("merge " + std::to_string(rank) + ": " + nlohmann::json(text).dump() + " is not in the vocab");
                return found->second;
            };
            const uint32_t l = find(left, &left_bytes), r = find(right, &right_bytes);
            const std::string merged_bytes = left_bytes + right_bytes;
            const auto merged = id_of.find(merged_bytes);
            if (merged == id_of.end())
                throw refuse("merge " + std::to_string(rank) + ": " + nlohmann::json(left + right).dump() + " is not in the vocab");
            merges.emplace(uint64_t{l} << 32 | r, BytePairEncoder::Merge{rank, merged->second});  // the first line wins
        }

        Specials specials;
        if (doc.contains("added_tokens"))
            for (const auto& added : doc["added_tokens"])
                specials.emplace(added.at("content").get<std::string>(), added.at("id").get<uint32_t>());
        return std::make_unique<BytePairEncoder>(std::move(token_bytes), std::move(merges),
                                                 model.value("ignore_merges", false), pattern, specials,
                                                 options.document_end, "tokenizer.json " + where);
    } catch (const nlohmann::json::exception& e) {
        throw refuse(std::string("a field is missing or of the wrong type: ") + e.what());
    }
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const TokenizerOptions& options) {
    if (options.file == "byte") return std::make_unique<ByteTokenizer>();
    if (!std::filesystem::is_regular_file(options.file))
        throw DataError(options.file + ": no such tokenizer file (give \"byte\", a tiktoken ranks file or a tokenizer.json)");
    if (std::filesystem::path(options.file).extension() == ".json") return load_tokenizer_json(options);
    return load_tiktoken(options);
}

}  // namespace pangea

#include "data/prepare.hpp"

#include <zlib.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "data/corpus.hpp"
#include "data/token_shard.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kChunkBytes = size_t{4} << 20;  // JSONL is tokenized in pieces of about this many bytes

bool ends_with(const std::string& text, std::string_view suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A piece of input for one tokenizing task: text (a whole document, JSON lines, or generated
// documents split at blank lines), or tokens read as they are.
struct Chunk {
    enum Kind { kDocument, kJsonLines, kBuiltin, kTokens } kind;
    std::string where;  // the file (or builtin:NAME)
    size_t first_line = 1;
    std::string text;
    std::vector<uint32_t> tokens;
};

struct Encoded {
    std::vector<uint32_t> tokens;
    uint64_t text_bytes = 0;
    double seconds = 0;
};

size_t line_of(std::string_view text, size_t offset) {
    return 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(std::min(offset, text.size())), '\n'));
}

void encode_document(const Tokenizer& tokenizer, std::string_view text, const std::string& where, size_t first_line,
                     std::vector<uint32_t>* tokens) {
    try {
        tokenizer.encode(text, tokens);
    } catch (const InvalidText& e) {
        throw DataError(where + ": line " + std::to_string(first_line - 1 + line_of(text, e.offset)) + ": " + e.what());
    }
    tokens->push_back(tokenizer.document_end());
}

Encoded encode_chunk(const Tokenizer& tokenizer, const std::string& field, Chunk& chunk) {
    const Clock::time_point start = Clock::now();
    Encoded out;
    out.text_bytes = chunk.text.size();
    switch (chunk.kind) {
    case Chunk::kTokens:
        out.tokens = std::move(chunk.tokens);
        break;
    case Chunk::kDocument:
        encode_document(tokenizer, chunk.text, chunk.where, 1, &out.tokens);
        break;
    case Chunk::kBuiltin:  // documents separated by blank lines, each keeping its last newline
        for (size_t begin = 0; begin < chunk.text.size();) {
            size_t end = chunk.text.find("\n\n", begin);
            if (end == std::string::npos) end = chunk.text.size();
            encode_document(tokenizer, std::string_view(chunk.text).substr(begin, end + 1 - begin), chunk.where, 1, &out.tokens);
            begin = end + 2;
        }
        break;
    case Chunk::kJsonLines: {
        size_t line = chunk.first_line;
        for (size_t begin = 0; begin < chunk.text.size(); ++line) {
            size_t end = chunk.text.find('\n', begin);
            if (end == std::string::npos) end = chunk.text.size();
            const std::string_view text = std::string_view(chunk.text).substr(begin, end - begin);
            begin = end + 1;
            if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue;  // a blank line
            const std::string at = chunk.where + ": line " + std::to_string(line);
            nlohmann::json object;
            try {
                object = nlohmann::json::parse(text);
            } catch (const nlohmann::json::exception& e) {
                throw DataError(at + ": not JSON: " + e.what());
            }
            if (!object.is_object()) throw DataError(at + ": not a JSON object");
            const auto found = object.find(field);
            if (found == object.end()) {
                std::string fields;
                for (const auto& [key, value] : object.items()) fields += (fields.empty() ? "" : ", ") + key;
                throw DataError(at + ": no field \"" + field + "\" (it has: " + (fields.empty() ? "none" : fields) +
                                "; choose one with --field)");
            }
            if (!found->is_string()) throw DataError(at + ": field \"" + field + "\" is " + found->type_name() + ", not a string");
            const std::string& document = found->get_ref<const std::string&>();
            try {
                tokenizer.encode(document, &out.tokens);
            } catch (const InvalidText& e) {
                throw DataError(at + ": field \"" + field + "\": " + e.what());
            }
            out.tokens.push_back(tokenizer.document_end());
        }
        break;
    }
    }
    out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return out;
}

// ---- readers: each hands its file to `emit` as chunks, in order --------------------------------

using Emit = std::function<void(Chunk&&)>;

std::string read_whole(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw DataError(path + ": cannot read");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw DataError(path + ": read error");
    return text.str();
}

// JSON lines, plain or gzip, cut at line ends into chunks of about kChunkBytes.
void read_json_lines(const std::string& path, const Emit& emit) {
    const std::unique_ptr<gzFile_s, decltype(&gzclose)> file(gzopen(path.c_str(), "rb"), &gzclose);  // reads plain files too
    if (!file) throw DataError(path + ": cannot read");
    gzbuffer(file.get(), 1 << 20);
    std::string pending;
    size_t line = 1;
    uint64_t total = 0;
    std::vector<char> buffer(1 << 20);
    auto send = [&](size_t upto) {
        Chunk chunk{Chunk::kJsonLines, path, line, pending.substr(0, upto), {}};
        line += static_cast<size_t>(std::count(chunk.text.begin(), chunk.text.end(), '\n'));
        pending.erase(0, upto);
        emit(std::move(chunk));
    };
    for (;;) {
        const int got = gzread(file.get(), buffer.data(), static_cast<unsigned>(buffer.size()));
        if (got < 0) {
            int code = 0;
            const char* why = gzerror(file.get(), &code);
            throw DataError(path + ": cannot decompress after " + std::to_string(total) + " bytes of text: " + why);
        }
        if (got == 0) break;
        total += static_cast<uint64_t>(got);
        pending.append(buffer.data(), static_cast<size_t>(got));
        if (pending.size() >= kChunkBytes)
            if (const size_t last = pending.rfind('\n'); last != std::string::npos) send(last + 1);
    }
    int code = Z_OK;
    const char* why = gzerror(file.get(), &code);
    if (code != Z_OK && code != Z_STREAM_END)
        throw DataError(path + ": truncated or corrupt gzip after " + std::to_string(total) + " bytes of text: " + why);
    if (!pending.empty()) send(pending.size());
}

// NumPy's .npy: "\x93NUMPY", version, header length, a Python dict literal, the array.
void read_npy(const std::string& path, const Emit& emit) {
    const std::string bytes = read_whole(path);
    const auto bad = [&](const std::string& why) { return DataError(path + ": " + why); };
    if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw bad("not a .npy file (no \\x93NUMPY magic)");
    const auto major = static_cast<unsigned char>(bytes[6]);
    size_t header_length = 0, header_at = 0;
    if (major == 1) {
        header_length = static_cast<unsigned char>(bytes[8]) | size_t{static_cast<unsigned char>(bytes[9])} << 8;
        header_at = 10;
    } else if (major == 2 || major == 3) {
        if (bytes.size() < 12) throw bad("truncated in its header");
        for (int k = 3; k >= 0; --k) header_length = header_length << 8 | static_cast<unsigned char>(bytes[8 + k]);
        header_at = 12;
    } else {
        throw bad(".npy version " + std::to_string(major) + " is not 1, 2 or 3");
    }
    if (header_at + header_length > bytes.size()) throw bad("truncated in its header");
    const std::string header = bytes.substr(header_at, header_length);
    auto value_of = [&](const std::string& key) {
        const size_t at = header.find("'" + key + "'");
        if (at == std::string::npos) throw bad("no '" + key + "' in the header " + header);
        const size_t colon = header.find(':', at);
        return header.substr(colon + 1);
    };
    const std::string descr = value_of("descr");
    size_t width = 0;
    if (descr.find("'<u2'") != std::string::npos || descr.find("'|u2'") != std::string::npos) width = 2;
    else if (descr.find("'<u4'") != std::string::npos) width = 4;
    else throw bad("dtype " + descr.substr(0, descr.find(',')) + ": token arrays must be little-endian uint16 or uint32 (<u2, <u4)");
    if (value_of("fortran_order").find("False") > 2) throw bad("fortran_order is not False");
    const std::string shape = value_of("shape");
    const size_t open = shape.find('('), close = shape.find(')');
    const std::string dims = shape.substr(open + 1, close - open - 1);
    char* end = nullptr;
    const unsigned long long count = std::strtoull(dims.c_str(), &end, 10);
    if (open == std::string::npos || close == std::string::npos || end == dims.c_str() ||
        dims.find_first_not_of(" ,", static_cast<size_t>(end - dims.c_str())) != std::string::npos)
        throw bad("shape (" + dims + ") is not one-dimensional");
    const size_t data_at = header_at + header_length;
    if (bytes.size() - data_at != count * width)
        throw bad("truncated: the header says " + std::to_string(count) + " tokens of " + std::to_string(width) +
                  " bytes, the file holds " + std::to_string(bytes.size() - data_at) + " bytes after its header");
    Chunk chunk{Chunk::kTokens, path, 1, {}, std::vector<uint32_t>(count)};
    for (size_t i = 0; i < count; ++i) {
        uint32_t v = 0;
        std::memcpy(&v, bytes.data() + data_at + i * width, width);  // little-endian host (x86-64, aarch64)
        chunk.tokens[i] = v;
    }
    emit(std::move(chunk));
}

// nanoGPT's .bin: raw little-endian uint16 ids.
void read_bin(const std::string& path, const Emit& emit) {
    const std::string bytes = read_whole(path);
    if (bytes.size() % 2 != 0)
        throw DataError(path + ": " + std::to_string(bytes.size()) +
                        " bytes: a .bin token file holds uint16 ids, an even number of bytes (truncated?)");
    Chunk chunk{Chunk::kTokens, path, 1, {}, std::vector<uint32_t>(bytes.size() / 2)};
    for (size_t i = 0; i < chunk.tokens.size(); ++i) {
        uint16_t v;
        std::memcpy(&v, bytes.data() + 2 * i, 2);
        chunk.tokens[i] = v;
    }
    emit(std::move(chunk));
}

void read_input(const std::string& path, const Emit& emit) {
    if (!fs::is_regular_file(path)) throw DataError(path + ": no such file");
    if (ends_with(path, ".jsonl") || ends_with(path, ".jsonl.gz") || ends_with(path, ".json.gz")) return read_json_lines(path, emit);
    if (ends_with(path, ".npy")) return read_npy(path, emit);
    if (ends_with(path, ".bin")) return read_bin(path, emit);
    emit(Chunk{Chunk::kDocument, path, 1, read_whole(path), {}});
}

// ---- the shards --------------------------------------------------------------------------------

// A hidden directory the shards are written into, removed unless committed.
class StagingDirectory {
public:
    explicit StagingDirectory(const fs::path& output)
        : output_(output), path_(output / (".prepare-" + std::to_string(::getpid()))) {
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~StagingDirectory() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
    StagingDirectory(const StagingDirectory&) = delete;
    StagingDirectory& operator=(const StagingDirectory&) = delete;
    const fs::path& path() const { return path_; }
    std::vector<fs::path> commit(const std::vector<std::string>& names) const {
        std::vector<fs::path> moved;
        for (const std::string& name : names) {
            fs::rename(path_ / name, output_ / name);
            moved.push_back(output_ / name);
        }
        return moved;
    }

private:
    fs::path output_;
    fs::path path_;
};

}  // namespace

PrepareReport prepare_shards(const PrepareOptions& options, const std::function<void(const PrepareProgress&)>& progress,
                             double progress_every) {
    const Clock::time_point start = Clock::now();
    if (options.inputs.empty() && options.builtin.empty())
        throw DataError("nothing to prepare: give input files or --builtin NAME");
    const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(options.tokenizer);
    PrepareReport report;
    report.tokenizer = tokenizer->describe();
    // Text takes the tokenizer's vocabulary; token arrays alone, --vocab's or a named tokenizer's.
    bool text_seen = !options.builtin.empty();
    for (const std::string& input : options.inputs)
        text_seen = text_seen || !(ends_with(input, ".npy") || ends_with(input, ".bin"));
    if (text_seen) report.vocab = std::max(options.vocab, tokenizer->vocab());
    else report.vocab = options.vocab != 0 ? options.vocab : options.tokenizer.file != "byte" ? tokenizer->vocab() : 0;

    fs::create_directories(options.output);
    for (const auto& entry : fs::directory_iterator(options.output))
        if (entry.path().extension() == ".tok")
            throw DataError(options.output.string() + " already holds shards (" + entry.path().filename().string() +
                            "): remove them or choose another directory");
    const StagingDirectory staging(options.output);

    std::vector<std::string> names;
    std::vector<uint32_t> tokens;
    auto flush = [&](bool last) {
        size_t taken = 0;
        while (tokens.size() - taken >= options.shard_tokens || (last && taken < tokens.size())) {
            const size_t take = std::min<size_t>(tokens.size() - taken, options.shard_tokens);
            const std::span<const uint32_t> shard = std::span<const uint32_t>(tokens).subspan(taken, take);
            const uint32_t largest = *std::max_element(shard.begin(), shard.end());
            char name[32];
            std::snprintf(name, sizeof name, "shard-%05zu.tok", names.size());
            write_token_shard(staging.path() / name, shard, report.vocab,
                              std::max(report.vocab, largest + 1) <= 65536 ? 2 : 4);
            names.emplace_back(name);
            taken += take;
        }
        tokens.erase(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(taken));
    };

    report.threads = options.threads != 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
    std::deque<std::future<Encoded>> in_flight;
    Clock::time_point last_progress = start;
    auto take_one = [&] {
        std::future<Encoded> task = std::move(in_flight.front());
        in_flight.pop_front();
        Encoded done = task.get();
        report.text_bytes += done.text_bytes;
        report.encode_seconds += done.seconds;
        report.tokens += done.tokens.size();
        tokens.insert(tokens.end(), done.tokens.begin(), done.tokens.end());
        flush(false);
        const Clock::time_point now = Clock::now();
        if (progress && std::chrono::duration<double>(now - last_progress).count() >= progress_every) {
            last_progress = now;
            progress({report.text_bytes, report.tokens, std::chrono::duration<double>(now - start).count()});
        }
    };
    const Emit emit = [&](Chunk&& chunk) {
        while (in_flight.size() >= report.threads) take_one();
        in_flight.push_back(std::async(std::launch::async, [&tokenizer, &options, &report, chunk = std::move(chunk)]() mutable {
            if (chunk.kind == Chunk::kTokens && report.vocab != 0)
                for (size_t i = 0; i < chunk.tokens.size(); ++i)
                    if (chunk.tokens[i] >= report.vocab)
                        throw DataError(chunk.where + ": token " + std::to_string(i) + " is " + std::to_string(chunk.tokens[i]) +
                                        ", not below the vocabulary " + std::to_string(report.vocab) +
                                        " (give the one its ids come from with --vocab)");
            return encode_chunk(*tokenizer, options.field, chunk);
        }));
    };
    try {
        if (!options.builtin.empty())
            emit(Chunk{Chunk::kBuiltin, "builtin:" + options.builtin, 1, builtin_text(options.builtin, options.builtin_bytes), {}});
        for (const std::string& input : options.inputs) read_input(input, emit);
        while (!in_flight.empty()) take_one();
    } catch (...) {
        for (auto& task : in_flight) task.wait();  // the tasks read `tokenizer` and `options`
        throw;
    }
    flush(true);
    report.shards = staging.commit(names);
    report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return report;
}

}  // namespace pangea

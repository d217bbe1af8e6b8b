// Tokenizers and `pangea data prepare` on small hand-made inputs: BPE merge order, the input
// formats, and bad input named by file and line with nothing left behind. Parity with an
// independent implementation on real vocabularies: tokenizer_parity_test.sh.
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>
#include <string>
#include <vector>

#include "data/prepare.hpp"
#include "data/token_shard.hpp"
#include "data/tokenizer.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

class PrepareTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("pangea-prepare-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    fs::path write(const std::string& name, const std::string& bytes) const {
        std::ofstream(dir_ / name, std::ios::binary) << bytes;
        return dir_ / name;
    }

    // A tiktoken ranks file: the 256 bytes, then "ab" (256), "abc" (257), "bc" (258), " a" (259).
    fs::path ranks_file() const {
        std::string text;
        auto base64 = [](const std::string& bytes) {
            static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            std::string out;
            for (size_t i = 0; i < bytes.size(); i += 3) {
                uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
                if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
                if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
                out += alphabet[v >> 18 & 63];
                out += alphabet[v >> 12 & 63];
                out += i + 1 < bytes.size() ? alphabet[v >> 6 & 63] : '=';
                out += i + 2 < bytes.size() ? alphabet[v & 63] : '=';
            }
            return out;
        };
        for (int b = 0; b < 256; ++b) text += base64(std::string(1, char(b))) + " " + std::to_string(b) + "\n";
        int rank = 256;
        for (const char* token : {"ab", "abc", "bc", " a"}) text += base64(token) + " " + std::to_string(rank++) + "\n";
        return write("tiny.tiktoken", text);
    }

    // The ranks file with a pattern of its own (no preset's special tokens) and separator 300.
    TokenizerOptions tiny_tokenizer() const {
        TokenizerOptions t;
        t.file = ranks_file();
        t.pattern = R"( ?\p{L}+| ?[^\s\p{L}]+|\s+)";
        t.document_end = "<|end|>=300";
        return t;
    }

    std::vector<uint32_t> shard_tokens(const fs::path& output) const {
        const TokenShard shard(output / "shard-00000.tok");
        std::vector<int32_t> ids(shard.size());
        shard.read(0, ids);
        return {ids.begin(), ids.end()};
    }

    PrepareOptions options(std::vector<std::string> inputs) const {
        PrepareOptions o;
        o.inputs = std::move(inputs);
        o.output = dir_ / "out";
        return o;
    }

    // The error prepare_shards() throws; also checks it left no shard and no staging directory.
    std::string failure(const PrepareOptions& o) const {
        try {
            prepare_shards(o);
        } catch (const DataError& e) {
            if (fs::exists(o.output))
                for (const auto& entry : fs::directory_iterator(o.output))
                    ADD_FAILURE() << "left behind: " << entry.path();
            return e.what();
        }
        ADD_FAILURE() << "no error";
        return "";
    }

    fs::path dir_;
};

TEST_F(PrepareTest, BpeMergesTheLowestRankedPairFirst) {
    const auto tokenizer = load_tokenizer(tiny_tokenizer());
    std::vector<uint32_t> ids;
    // "abc" is a token; " xbc" has one merge, bc; in " abd", ab (256) outranks " a" (259).
    tokenizer->encode("abc xbc abd", &ids);
    EXPECT_EQ(ids, (std::vector<uint32_t>{257, ' ', 'x', 258, ' ', 256, 'd'}));
    EXPECT_EQ(tokenizer->vocab(), 301u);
    EXPECT_EQ(tokenizer->document_end(), 300u);
}

TEST_F(PrepareTest, TextJsonlNpyAndBinInputs) {
    write("a.txt", "ab");
    write("b.jsonl", "{\"text\": \"bc\"}\n\n{\"text\": \"abc\", \"id\": 3}\n");
    // A .npy of uint16 [7, 8, 9].
    std::string npy = "\x93NUMPY\x01";
    npy += '\0';
    std::string header = "{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }";
    header.resize(118 - 10 - 1, ' ');
    header += '\n';
    npy += static_cast<char>(header.size());
    npy += '\0';
    npy += header;
    npy += std::string("\x07\x00\x08\x00\x09\x00", 6);
    write("c.npy", npy);
    write("d.bin", std::string("\x05\x00\x06\x00", 4));
    PrepareOptions o = options({(dir_ / "a.txt").string(), (dir_ / "b.jsonl").string(), (dir_ / "c.npy").string(),
                                (dir_ / "d.bin").string()});
    o.tokenizer = tiny_tokenizer();
    const PrepareReport report = prepare_shards(o);
    EXPECT_EQ(shard_tokens(o.output), (std::vector<uint32_t>{256, 300, 258, 300, 257, 300, 7, 8, 9, 5, 6}));
    EXPECT_EQ(report.vocab, 301u);
    EXPECT_EQ(report.shards.size(), 1u);
}

TEST_F(PrepareTest, GzipJsonlAndThreadsGiveTheSameShards) {
    std::string lines;
    for (int i = 0; i < 20000; ++i) lines += "{\"body\": \"document " + std::to_string(i) + " abc ab bc\"}\n";
    {
        const std::unique_ptr<gzFile_s, decltype(&gzclose)> gz(gzopen((dir_ / "x.jsonl.gz").c_str(), "wb"), &gzclose);
        gzwrite(gz.get(), lines.data(), static_cast<unsigned>(lines.size()));
    }
    write("x.jsonl", lines);
    std::vector<std::vector<uint32_t>> results;
    for (const auto& [file, threads] : {std::pair{"x.jsonl.gz", 1u}, std::pair{"x.jsonl", 3u}}) {
        PrepareOptions o = options({(dir_ / file).string()});
        o.output = dir_ / ("out-" + std::to_string(threads));
        o.field = "body";
        o.threads = threads;
        o.tokenizer = tiny_tokenizer();
        prepare_shards(o);
        results.push_back(shard_tokens(o.output));
    }
    EXPECT_EQ(results[0], results[1]);
    EXPECT_GT(results[0].size(), 20000u * 10);
}

TEST_F(PrepareTest, BadInputIsNamedByFileAndLineAndLeavesNothing) {
    write("utf8.txt", "good line\nsecond \xff\xfe line\n");
    PrepareOptions o = options({(dir_ / "utf8.txt").string()});
    o.tokenizer = tiny_tokenizer();
    EXPECT_NE(failure(o).find("utf8.txt: line 2: invalid UTF-8 at byte 17"), std::string::npos) << failure(o);

    write("field.jsonl", "{\"text\": \"a\"}\n{\"body\": \"b\", \"id\": 1}\n");
    o.inputs = {(dir_ / "field.jsonl").string()};
    EXPECT_NE(failure(o).find("field.jsonl: line 2: no field \"text\" (it has: body, id;"), std::string::npos) << failure(o);

    write("broken.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\n");
    o.inputs = {(dir_ / "broken.jsonl").string()};
    EXPECT_NE(failure(o).find("broken.jsonl: line 2: not JSON"), std::string::npos) << failure(o);

    std::string gz_bytes;
    {
        std::string lines;
        for (int i = 0; i < 1000; ++i) lines += "{\"text\": \"line " + std::to_string(i) + "\"}\n";
        const std::unique_ptr<gzFile_s, decltype(&gzclose)> gz(gzopen((dir_ / "whole.jsonl.gz").c_str(), "wb"), &gzclose);
        gzwrite(gz.get(), lines.data(), static_cast<unsigned>(lines.size()));
    }
    {
        std::ifstream in(dir_ / "whole.jsonl.gz", std::ios::binary);
        gz_bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    write("cut.jsonl.gz", gz_bytes.substr(0, gz_bytes.size() / 2));
    o.inputs = {(dir_ / "cut.jsonl.gz").string()};
    EXPECT_NE(failure(o).find("cut.jsonl.gz: truncated or corrupt gzip"), std::string::npos) << failure(o);

    std::string npy = "\x93NUMPY\x01";
    npy += '\0';
    std::string header = "{'descr': '<u4', 'fortran_order': False, 'shape': (10,), }\n";
    npy += static_cast<char>(header.size());
    npy += '\0';
    npy += header + std::string(12, '\0');
    write("short.npy", npy);
    o.inputs = {(dir_ / "short.npy").string()};
    EXPECT_NE(failure(o).find("short.npy: truncated: the header says 10 tokens of 4 bytes, the file holds 12 bytes"),
              std::string::npos) << failure(o);

    write("odd.bin", "abc");
    o.inputs = {(dir_ / "odd.bin").string()};
    EXPECT_NE(failure(o).find("odd.bin: 3 bytes"), std::string::npos) << failure(o);

    // A good file before a bad one: its shards are not left either.
    write("good.txt", std::string(5000, 'a'));
    o.inputs = {(dir_ / "good.txt").string(), (dir_ / "utf8.txt").string()};
    o.shard_tokens = 100;
    EXPECT_NE(failure(o).find("utf8.txt: line 2"), std::string::npos);
}

TEST_F(PrepareTest, BadTokenizerFilesAreNamedByLine) {
    write("bad.tiktoken", "YQ== 0\nnot-base64! 1\n");
    TokenizerOptions t;
    t.file = (dir_ / "bad.tiktoken").string();
    try {
        load_tokenizer(t);
        ADD_FAILURE() << "no error";
    } catch (const DataError& e) {
        EXPECT_NE(std::string(e.what()).find("bad.tiktoken: line 2: the token is not base64"), std::string::npos) << e.what();
    }
    write("few.tiktoken", "YQ== 0\n");
    t.file = (dir_ / "few.tiktoken").string();
    EXPECT_THROW(load_tokenizer(t), DataError);  // byte 0x00 has no token
    write("tokenizer.json", "{\"model\": {\"type\": \"Unigram\"}, \"pre_tokenizer\": null}");
    t.file = (dir_ / "tokenizer.json").string();
    try {
        load_tokenizer(t);
        ADD_FAILURE() << "no error";
    } catch (const DataError& e) {
        EXPECT_NE(std::string(e.what()).find("tokenizer.json: model.type is \"Unigram\""), std::string::npos) << e.what();
    }
    t.file = ranks_file();
    t.document_end = "";
    t.pattern = R"(\p{L}+|\s+|.)";  // a pattern of its own: no preset's special tokens
    try {
        load_tokenizer(t);
        ADD_FAILURE() << "no error";
    } catch (const DataError& e) {
        EXPECT_NE(std::string(e.what()).find("--document-end NAME or NAME=ID"), std::string::npos) << e.what();
    }
}

TEST_F(PrepareTest, RefusesAnOutputThatHoldsShards) {
    write("a.txt", "abc");
    PrepareOptions o = options({(dir_ / "a.txt").string()});
    prepare_shards(o);
    try {
        prepare_shards(o);
        ADD_FAILURE() << "no error";
    } catch (const DataError& e) {
        EXPECT_NE(std::string(e.what()).find("already holds shards (shard-00000.tok)"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace pangea

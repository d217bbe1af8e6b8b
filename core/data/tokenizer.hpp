// Tokenizers for `pangea data prepare` (docs/data.md): the built-in byte tokenizer, tiktoken
// ranks files (cl100k_base, o200k_base, Llama 3's tokenizer.model) and Hugging Face
// tokenizer.json byte-level BPE (the GPT-2 and Llama 3 families).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/token_shard.hpp"

namespace pangea {

// Text that is not valid UTF-8; `offset` is the byte where it goes wrong.
class InvalidText : public DataError {
public:
    InvalidText(const std::string& what, size_t at) : DataError(what), offset(at) {}
    size_t offset;
};

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    // Appends the ids of `text`, ordinary text: special tokens written in it are not recognized
    // (training data that mentions "<|endoftext|>" gets that text's tokens, not the separator).
    // Throws InvalidText on invalid UTF-8, naming the byte offset in `text`. Safe to call from
    // several threads at once.
    virtual void encode(std::string_view text, std::vector<uint32_t>* ids) const = 0;
    // Every id encode() gives and document_end() are below it.
    virtual uint32_t vocab() const = 0;
    // The token appended after each document.
    virtual uint32_t document_end() const = 0;
    // One line for people: what it is, where it came from, its vocabulary and separator.
    virtual std::string describe() const = 0;
};

struct TokenizerOptions {
    // "byte" (the built-in byte tokenizer), a tiktoken ranks file (each line: a base64 token and
    // its rank), or a Hugging Face tokenizer.json (a file whose name ends in .json).
    std::string file = "byte";
    // tiktoken only: the pre-tokenizer, a preset (cl100k, o200k, llama3, gpt2: its regex and
    // special tokens) or a regex of its own (then document_end must define its separator).
    std::string pattern = "cl100k";
    // The token that ends each document: the name of one of the tokenizer's special tokens, or
    // NAME=ID to define one. Empty: <|endoftext|>, else <|end_of_text|>, else </s>.
    std::string document_end;
};

// Throws DataError naming the file and what is wrong with it.
std::unique_ptr<Tokenizer> load_tokenizer(const TokenizerOptions& options);

}  // namespace pangea

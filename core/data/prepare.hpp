// `pangea data prepare`: documents from text files, JSONL (plain or gzip) and built-in corpus
// sources, through a tokenizer, and already tokenized arrays (.npy, nanoGPT's .bin), into token
// shards of at most `shard_tokens` tokens (docs/data.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "data/tokenizer.hpp"

namespace pangea {

struct PrepareOptions {
    // By name: *.jsonl / *.jsonl.gz (one JSON object per line, its `field` a document), *.npy
    // (a 1-D uint16 or uint32 array of token ids), *.bin (raw little-endian uint16 token ids, as
    // nanoGPT writes them); anything else is a text file, one document.
    std::vector<std::string> inputs;
    std::string field = "text";
    std::string builtin;  // a built-in source's name, generating builtin_bytes of text
    size_t builtin_bytes = size_t{1} << 20;
    TokenizerOptions tokenizer;
    // The vocabulary .npy/.bin ids come from, recorded in the shards (0: the tokenizer's when one
    // other than the byte tokenizer is given, else not recorded: then [model] vocab must be set).
    uint32_t vocab = 0;
    std::filesystem::path output;  // directory for shard-00000.tok, ...; must hold no shards yet
    uint64_t shard_tokens = uint64_t{1} << 27;
    unsigned threads = 0;  // tokenizing threads; 0: one per core
};

struct PrepareProgress {
    uint64_t text_bytes = 0;  // of text tokenized so far
    uint64_t tokens = 0;      // written or waiting to be
    double seconds = 0;       // since the start
};

struct PrepareReport {
    std::vector<std::filesystem::path> shards;
    uint64_t tokens = 0;
    uint64_t text_bytes = 0;
    uint32_t vocab = 0;
    unsigned threads = 1;
    double seconds = 0;          // wall time
    double encode_seconds = 0;   // tokenizing time summed over threads
    std::string tokenizer;       // Tokenizer::describe()
};

// Writes the shards into a hidden directory inside `output` first and moves them into place
// only when every input has been read: a failure (or an interrupt) leaves no shards behind.
// `progress`, if set, is called from the calling thread about every `progress_every` seconds.
// Throws DataError naming the file and the line or byte offset of bad input.
PrepareReport prepare_shards(const PrepareOptions& options,
                             const std::function<void(const PrepareProgress&)>& progress = {},
                             double progress_every = 2.0);

}  // namespace pangea

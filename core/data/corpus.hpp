// The built-in byte-level tokenizer and the built-in corpus.
//
// The byte tokenizer maps each byte of UTF-8 text to its value (0..255) and ends every document
// with token 256: a 257-token vocabulary that needs no vocabulary file. The built-in corpus is
// generated, deterministically, by small grammars (prose, code, arithmetic, lists), so the
// project ships no third-party text and a run never downloads anything. It is what the embedded
// default and the tests train on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pangea {

constexpr uint32_t kByteVocab = 257;
constexpr uint32_t kDocumentEnd = 256;

// Appends the tokens of one document (its bytes, then kDocumentEnd).
void byte_tokenize(std::string_view document, std::vector<uint32_t>* tokens);

// Text of tokens from the byte tokenizer (kDocumentEnd shown as a newline; other ids >= 256 as '?').
std::string byte_detokenize(const std::vector<int32_t>& tokens);

// The built-in corpus's sources, in the order of the default mixture.
const std::vector<std::string>& builtin_source_names();

// About `bytes` of generated text for a built-in source, as documents separated by blank lines
// (one per paragraph). The same name and size give the same text on every machine. Throws
// DataError for an unknown name, listing the known ones.
std::string builtin_text(std::string_view name, size_t bytes);

}  // namespace pangea

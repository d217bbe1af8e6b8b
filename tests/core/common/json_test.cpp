// core/common/json: nlohmann-json behind parse_json/to_json and the field helpers. The
// hand-written code it replaced turned "\n" into "n" and could not read its own \u00XX escapes.
#include <gtest/gtest.h>

#include "common/json.hpp"

namespace pangea {
namespace {

TEST(Json, StringsRoundTripWhateverTheyHold) {
    const std::string nasty = std::string("line\nbreak \"quoted\" back\\slash tab\t bell\x07 nul") + '\0' +
                              " \x1f end; caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    const std::string text = to_json(Json{{"s", nasty}, {nasty, 1}});
    EXPECT_EQ(text.find('\n'), std::string::npos) << "one line: the coordinator's messages are lines";
    const Json back = parse_json(text);
    EXPECT_EQ(json_string(back, "s"), nasty);
    EXPECT_EQ(json_int(back, nasty.c_str()), std::nullopt) << "(a C string key stops at the NUL)";
    EXPECT_EQ(back.begin().value(), nasty);
    EXPECT_EQ(std::next(back.begin()).key(), nasty);
    EXPECT_EQ(json_string(parse_json(R"({"a":"\u00e9\n\u0001\ud83d\ude00"})"), "a"), "\xc3\xa9\n\x01\xf0\x9f\x98\x80");
}

TEST(Json, FieldsAreInTheOrderWrittenAndNumbersExact) {
    const Json v{{"z", 1}, {"a", 0.1}, {"m", int64_t{-9007199254740993}}, {"u", uint64_t{18446744073709551615u}}};
    EXPECT_EQ(to_json(v), R"({"z":1,"a":0.1,"m":-9007199254740993,"u":18446744073709551615})");
    EXPECT_EQ(to_json(Json{{"nan", std::nan("")}}), R"({"nan":null})");
    EXPECT_EQ(to_json(Json{{"bad", "\xff"}}), "{\"bad\":\"\xef\xbf\xbd\"}") << "not UTF-8: replaced, not thrown";
}

TEST(Json, FieldsOfUntrustedInputReadAsNulloptWhenMissingOrMistyped) {
    const Json v = parse_json(R"({"i":7,"f":1.5,"s":"x","b":true,"big":18446744073709551615,"neg":-3})");
    EXPECT_EQ(json_int(v, "i"), 7);
    EXPECT_EQ(json_int(v, "neg"), -3);
    EXPECT_EQ(json_int(v, "f"), std::nullopt);
    EXPECT_EQ(json_int(v, "big"), std::nullopt) << "does not fit int64";
    EXPECT_EQ(json_int(v, "s"), std::nullopt);
    EXPECT_EQ(json_int(v, "absent"), std::nullopt);
    EXPECT_EQ(json_number(v, "f"), 1.5);
    EXPECT_EQ(json_number(v, "i"), 7.0);
    EXPECT_EQ(json_string(v, "s"), "x");
    EXPECT_EQ(json_string(v, "i"), std::nullopt);
    EXPECT_EQ(json_bool(v, "b"), true);
    EXPECT_EQ(json_bool(v, "s"), std::nullopt);
    EXPECT_EQ(json_string(parse_json("[1]"), "s"), std::nullopt) << "not an object";
    EXPECT_EQ(json_int(Json(), "i"), std::nullopt);
}

TEST(Json, MalformedTextIsAJsonErrorSayingWhatAndWhere) {
    for (const char* bad : {"", "{", "{\"a\":}", "[1,]", "\"abc", "{\"a\":1} x", "[\"\\u12g4\"]", "nul", "[\"\xff\"]",
                            "{'a':1}", "[1 2]", "\"a\nb\""})
        EXPECT_THROW(parse_json(bad), JsonError) << bad;
    try {
        parse_json("{\"a\":\n  tru}");
        FAIL() << "no error";
    } catch (const JsonError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("line 2, column"), std::string::npos) << what;
        EXPECT_NE(what.find("invalid literal"), std::string::npos) << what;
        EXPECT_EQ(what.find("[json.exception"), std::string::npos) << what;
    }
    EXPECT_THROW(parse_json(std::string(100, '[') + std::string(100, ']')), JsonError) << "too deep";
    EXPECT_NO_THROW(parse_json(std::string(60, '[') + std::string(60, ']')));
    try {
        parse_json(std::string(100000, '['));
        FAIL() << "no error";
    } catch (const JsonError& e) {
        EXPECT_NE(std::string(e.what()).find("deeper than 64"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace pangea

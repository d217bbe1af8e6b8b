#include "common/settings.hpp"

#include <gtest/gtest.h>

namespace pangea {
namespace {

constexpr pangea_setting kInt = {"n", PANGEA_SETTING_INT, "4", "h", 1.0, 10.0, nullptr};
constexpr pangea_setting kFloat = {"x", PANGEA_SETTING_FLOAT, "0.5", "h", 0.0, 1.0, nullptr};
constexpr pangea_setting kBool = {"b", PANGEA_SETTING_BOOL, "true", "h", 1.0, 0.0, nullptr};
constexpr pangea_setting kChoice = {"s", PANGEA_SETTING_STRING, "a", "h", 1.0, 0.0, "a|bb|c"};

TEST(Settings, ParsesEachTypeFromText) {
    std::string error;
    EXPECT_EQ(std::get<int64_t>(*parse_setting_text(kInt, "-42", &error)), -42);
    EXPECT_EQ(std::get<double>(*parse_setting_text(kFloat, "2.5e-3", &error)), 2.5e-3);
    EXPECT_EQ(std::get<bool>(*parse_setting_text(kBool, "false", &error)), false);
    EXPECT_EQ(std::get<std::string>(*parse_setting_text(kChoice, "\"quoted\"", &error)), "quoted");
}

TEST(Settings, RejectsMalformedText) {
    std::string error;
    EXPECT_FALSE(parse_setting_text(kInt, "4x", &error));
    EXPECT_EQ(error, "an integer");
    EXPECT_FALSE(parse_setting_text(kInt, "99999999999999999999", &error));
    EXPECT_EQ(error, "an integer that fits in 64 bits");
    EXPECT_FALSE(parse_setting_text(kInt, "", &error));
    EXPECT_FALSE(parse_setting_text(kFloat, "nan", &error));
    EXPECT_FALSE(parse_setting_text(kFloat, "1e999", &error));
    EXPECT_FALSE(parse_setting_text(kBool, "yes", &error));
    EXPECT_EQ(error, "true or false");
}

TEST(Settings, ChecksRangesAndChoices) {
    EXPECT_EQ(check_setting_value(kInt, int64_t{10}), "");
    EXPECT_EQ(check_setting_value(kInt, int64_t{11}), "an integer in [1, 10]");
    EXPECT_EQ(check_setting_value(kFloat, -0.1), "a number in [0, 1]");
    EXPECT_EQ(check_setting_value(kChoice, std::string("bb")), "");
    EXPECT_EQ(check_setting_value(kChoice, std::string("b")), "one of: a | bb | c");
}

TEST(Settings, FormatsAsToml) {
    EXPECT_EQ(format_setting_value(std::string("a\"b")), "\"a\\\"b\"");
    EXPECT_EQ(format_setting_value(int64_t{7}), "7");
    EXPECT_EQ(format_setting_value(1.0), "1.0");
    EXPECT_EQ(format_setting_value(0.1), "0.1");
    EXPECT_EQ(format_setting_value(false), "false");
}

TEST(Settings, ChecksDeclarations) {
    EXPECT_EQ(check_setting_declaration(kInt), "");
    pangea_setting bad = kInt;
    bad.default_value = "11";
    EXPECT_EQ(check_setting_declaration(bad), "setting 'n': default \"11\" is not an integer in [1, 10]");
    bad = kInt;
    bad.name = "Level";
    EXPECT_NE(check_setting_declaration(bad).find("lower_snake_case"), std::string::npos);
    bad = kInt;
    bad.name = "plugin";
    EXPECT_NE(check_setting_declaration(bad).find("reserved"), std::string::npos);
    bad = kInt;
    bad.help = "";
    EXPECT_NE(check_setting_declaration(bad).find("no help"), std::string::npos);
}

}  // namespace
}  // namespace pangea

#include "manifest/manifest.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pangea {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kFixtures = PANGEA_TEST_FIXTURES;

class ManifestTest : public ::testing::Test {
protected:
    PluginRegistry registry{std::vector<SearchPath>{{kFixtures + "/good", "fixtures"},
                                                    {PANGEA_TEST_BUILTIN_PLUGINS, "build tree"}}};

    Manifest parse(const std::string& text, const std::vector<Override>& overrides = {}) {
        return parse_manifest(text, "test.toml", kFixtures, overrides, registry);
    }

    // The errors parse() reports (and fails the test if it reports none).
    std::vector<std::string> errors(const std::string& text,
                                    const std::vector<Override>& overrides = {}) {
        try {
            parse(text, overrides);
        } catch (const ManifestError& e) {
            return e.errors();
        }
        ADD_FAILURE() << "manifest was accepted:\n" << text;
        return {};
    }
};

TEST_F(ManifestTest, EmptyManifestGetsEveryDefault) {
    const Manifest m = parse("");
    EXPECT_EQ(m.get_string("run", "name"), "pangea");
    EXPECT_EQ(m.get_int("diloco", "inner_steps"), 100);
    EXPECT_EQ(m.get_bool("diloco", "overlap"), false);
    EXPECT_EQ(m.core.at("diloco").at("inner_steps").origin, "default");
    EXPECT_TRUE(m.plugins.empty());
}

TEST_F(ManifestTest, ValuesCarryTheirLocation) {
    const Manifest m = parse("[diloco]\n  inner_steps = 50\n");
    EXPECT_EQ(m.get_int("diloco", "inner_steps"), 50);
    EXPECT_EQ(m.core.at("diloco").at("inner_steps").origin, "test.toml:2:3");
}

TEST_F(ManifestTest, SyntaxErrorNamesLineAndColumn) {
    EXPECT_THAT(errors("[run]\nname = \n"),
                ElementsAre(HasSubstr("test.toml:2:")));
    EXPECT_THAT(errors("[run]\nname = \n")[0], HasSubstr("TOML syntax error"));
}

TEST_F(ManifestTest, UnknownSectionIsAnError) {
    EXPECT_THAT(errors("[run]\n[dilocco]\ninner_steps = 3\n"),
                ElementsAre(HasSubstr("test.toml:2:2: unknown section [dilocco]; sections are: run, "
                                      "model, data, train, diloco, mesh, checkpoint, node, transport, "
                                      "compress, optim, storage")));
}

TEST_F(ManifestTest, KeyOutsideAnySectionIsAnError) {
    EXPECT_THAT(errors("seed = 3\n"), ElementsAre(HasSubstr("test.toml:1:1: 'seed' is outside any section")));
}

TEST_F(ManifestTest, UnknownKeyIsAnErrorListingValidKeys) {
    EXPECT_THAT(errors("[diloco]\ninner_step = 3\n"),
                ElementsAre("test.toml:2:1: unknown key 'inner_step' in [diloco]; valid keys: "
                            "inner_steps, outer_steps, fragments, overlap, overlap_alpha, outlier_factor, quorum, grace_ms"));
}

TEST_F(ManifestTest, WrongTypeSaysWhatWasExpected) {
    EXPECT_THAT(errors("[diloco]\ninner_steps = \"ten\"\n"),
                ElementsAre("test.toml:2:1: [diloco] inner_steps: expected an integer, got a string"));
    EXPECT_THAT(errors("[train]\nmicro_batch = 2.5\n"),
                ElementsAre(HasSubstr("expected an integer, got a float")));
    EXPECT_THAT(errors("[diloco]\noverlap = 1\n"),
                ElementsAre(HasSubstr("expected true or false, got an integer")));
    EXPECT_THAT(errors("[diloco]\ninner_steps = [1, 2]\n"), ElementsAre(HasSubstr("got an array")));
    EXPECT_THAT(errors("[diloco.sub]\nx = 1\n"), ElementsAre(HasSubstr("expected a value, got a table")));
}

TEST_F(ManifestTest, FloatSettingAcceptsAnIntegerLiteral) {
    EXPECT_EQ(parse("[train]\nlr = 1\n").get_float("train", "lr"), 1.0);
}

TEST_F(ManifestTest, OutOfRangeAndBadChoiceAreErrors) {
    EXPECT_THAT(errors("[diloco]\ninner_steps = 0\n"),
                ElementsAre("test.toml:2:1: [diloco] inner_steps: expected an integer in [1, "
                            "1000000000], got 0"));
    EXPECT_THAT(errors("[run]\nlog_level = \"loud\"\n"),
                ElementsAre(HasSubstr("expected one of: debug | info | warn | error, got \"loud\"")));
}

TEST_F(ManifestTest, SettingsThatContradictEachOtherAreErrors) {
    EXPECT_THAT(errors("[mesh]\nnodes = 2\nmin_members = 3\n"),
                ElementsAre("test.toml:3:1: [mesh] min_members (3) is larger than nodes (2): the "
                            "run could never start an outer step"));
    EXPECT_THAT(errors("[mesh]\nheartbeat_ms = 3000\n"),
                ElementsAre(HasSubstr("test.toml:2:1: [mesh] heartbeat_ms (3000) must be shorter "
                                      "than timeout_ms (3000)")));
}

TEST_F(ManifestTest, EveryErrorIsReportedAtOnce) {
    EXPECT_EQ(errors("[diloco]\ninner_steps = 0\nouter_steps = -1\n[mesh]\nnodes = \"x\"\n").size(), 3u);
}

TEST_F(ManifestTest, PluginSectionSelectsAndValidatesThePlugin) {
    const Manifest m = parse("[compress]\nplugin = \"probe\"\nkey = \"k\"\nlevel = 9\n");
    const PluginChoice& choice = m.plugins.at(PANGEA_KIND_COMPRESS);
    ASSERT_NE(choice.plugin, nullptr);
    EXPECT_EQ(choice.plugin->name, "probe");
    EXPECT_EQ(std::get<int64_t>(choice.settings.at("level").value), 9);
    EXPECT_EQ(std::get<std::string>(choice.settings.at("mode").value), "fast");  // default
    EXPECT_EQ(choice.settings.at("mode").origin, "default");
}

TEST_F(ManifestTest, PluginSettingErrors) {
    EXPECT_THAT(errors("[compress]\nplugin = \"probe\"\nkey = \"k\"\nlevel = 10\n"),
                ElementsAre("test.toml:4:1: [compress] (plugin probe) level: expected an integer "
                            "in [1, 9], got 10"));
    EXPECT_THAT(errors("[compress]\nplugin = \"probe\"\nkey = \"k\"\nlevle = 1\n"),
                ElementsAre(HasSubstr("unknown key 'levle' in [compress] (plugin probe); valid keys: "
                                      "plugin, library, level, ratio, mode, fail_create, key")));
    EXPECT_THAT(errors("[compress]\nplugin = \"probe\"\n"),
                ElementsAre("test.toml:1:2: [compress] (plugin probe) needs 'key' (string: a "
                            "required string)"));
}

TEST_F(ManifestTest, PluginSectionWithoutPluginKeyOrWithAnUnknownPlugin) {
    EXPECT_THAT(errors("[compress]\nlevel = 3\n"), ElementsAre(HasSubstr("[compress] has no 'plugin' key")));
    EXPECT_THAT(errors("[compress]\nplugin = 3\n"),
                ElementsAre(HasSubstr("[compress] plugin: expected a string, got an integer")));
    const auto unknown = errors("[optim]\nplugin = \"adam\"\n");
    ASSERT_EQ(unknown.size(), 1u);
    EXPECT_THAT(unknown[0], HasSubstr("test.toml:2:1: [optim] plugin \"adam\": no optim plugin named "
                                      "'adam'. Available: faulty, nesterov."));
    EXPECT_THAT(unknown[0], HasSubstr("searched:"));
}

TEST_F(ManifestTest, LibraryKeyLoadsThatFileRelativeToTheManifest) {
    const Manifest m = parse("[compress]\nplugin = \"dup\"\nlibrary = \"dups/libdup_b.so\"\n");
    const PluginChoice& choice = m.plugins.at(PANGEA_KIND_COMPRESS);
    ASSERT_NE(choice.plugin, nullptr);
    EXPECT_EQ(choice.plugin->library_path, kFixtures + "/dups/libdup_b.so");
    EXPECT_EQ(choice.library_origin, "test.toml:3:1");
}

TEST_F(ManifestTest, LibraryKeyErrorsNameTheFileAndWhy) {
    EXPECT_THAT(errors("[compress]\nplugin = \"dup\"\nlibrary = \"missing/lib.so\"\n"),
                ElementsAre(HasSubstr("test.toml:3:1: [compress] plugin \"dup\": cannot load plugin "
                                      "library " + kFixtures + "/missing/lib.so: file not found")));
    EXPECT_THAT(errors("[compress]\nplugin = \"other\"\nlibrary = \"dups/libdup_b.so\"\n"),
                ElementsAre(HasSubstr("provides compress/dup, not compress/other")));
    EXPECT_THAT(errors("[compress]\nplugin = \"broken\"\nlibrary = \"broken/libsmall_vtable.so\"\n"),
                ElementsAre(HasSubstr("vtable too small")));
}

TEST_F(ManifestTest, OverridesApplyInOrderAndRecordTheirOrigin) {
    const auto environment = environment_overrides(
        {"PANGEA_DILOCO_INNER_STEPS=7", "PANGEA_DILOCO_OUTER_STEPS=3", "PANGEA_PLUGIN_PATH=/x",
         "HOME=/root", "PANGEA_NOSECTION_X=1"});
    ASSERT_EQ(environment.size(), 2u);
    std::vector<Override> overrides = environment;
    overrides.push_back(parse_set_argument("diloco.inner_steps=50"));
    const Manifest m = parse("[diloco]\ninner_steps = 5\nouter_steps = 2\n", overrides);
    EXPECT_EQ(m.get_int("diloco", "inner_steps"), 50);  // --set beats the environment
    EXPECT_EQ(m.core.at("diloco").at("inner_steps").origin, "--set diloco.inner_steps=50");
    EXPECT_EQ(m.get_int("diloco", "outer_steps"), 3);  // the environment beats the file
    EXPECT_EQ(m.core.at("diloco").at("outer_steps").origin, "environment PANGEA_DILOCO_OUTER_STEPS");
}

TEST_F(ManifestTest, OverridesAreValidatedLikeTheFile) {
    EXPECT_THAT(errors("", environment_overrides({"PANGEA_DILOCO_INNER_STEPS=abc"})),
                ElementsAre("environment PANGEA_DILOCO_INNER_STEPS: [diloco] inner_steps: expected "
                            "an integer, got \"abc\""));
    EXPECT_THAT(errors("", {parse_set_argument("mesh.nodez=3")}),
                ElementsAre(HasSubstr("--set mesh.nodez=3: unknown key 'nodez' in [mesh]")));
    EXPECT_THROW(parse_set_argument("mesh.nodes"), ManifestError);
    EXPECT_THROW(parse_set_argument("nodes=3"), ManifestError);
    try {
        parse_set_argument("meshh.nodes=3");
        FAIL();
    } catch (const ManifestError& e) {
        EXPECT_THAT(e.what(), HasSubstr("--set meshh.nodes=3: unknown section [meshh]"));
    }
}

TEST_F(ManifestTest, OverrideCanChooseAPlugin) {
    const Manifest m = parse("", {parse_set_argument("compress.plugin=none")});
    EXPECT_EQ(m.plugins.at(PANGEA_KIND_COMPRESS).plugin->name, "none");
}

TEST_F(ManifestTest, ResolvedTomlReadsBackToTheSameConfiguration) {
    const Manifest first = parse("[diloco]\ninner_steps = 5\n[train]\nlr = 0.25\n[compress]\n"
                                 "plugin = \"probe\"\nkey = \"a \\\"quoted\\\" key\"\n");
    const std::string text = first.to_toml();
    EXPECT_THAT(text, HasSubstr("inner_steps = 5"));
    EXPECT_THAT(text, HasSubstr("# test.toml:2:1"));
    const Manifest second = parse(text);
    for (const auto& [section, settings] : first.core)
        for (const auto& [key, setting] : settings)
            EXPECT_EQ(second.core.at(section).at(key).value, setting.value) << section << "." << key;
    EXPECT_EQ(second.plugins.at(PANGEA_KIND_COMPRESS).settings.at("key").value,
              first.plugins.at(PANGEA_KIND_COMPRESS).settings.at("key").value);
}

TEST_F(ManifestTest, MissingFileIsAClearError) {
    try {
        load_manifest("/nonexistent/run.toml", {}, registry);
        FAIL();
    } catch (const ManifestError& e) {
        EXPECT_STREQ(e.what(), "/nonexistent/run.toml: cannot open the manifest (no such file)");
    }
}

TEST_F(ManifestTest, ShippedExamplesAreValid) {
    const Manifest m = load_manifest(std::string(PANGEA_SOURCE_DIR) + "/examples/local.toml", {}, registry);
    EXPECT_EQ(m.get_int("mesh", "nodes"), 4);
    EXPECT_EQ(m.plugins.at(PANGEA_KIND_OPTIM).plugin->name, "nesterov");
}

}  // namespace
}  // namespace pangea

#include "plugin_host/plugin_registry.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "plugin_host/plugin_instance.hpp"

namespace pangea {
namespace {

using ::testing::HasSubstr;

const std::string kFixtures = PANGEA_TEST_FIXTURES;
std::string broken(const std::string& name) { return kFixtures + "/broken/lib" + name + ".so"; }

// The reason load_library() gives for rejecting the library, or "" if it loaded.
std::string rejection_of(const std::string& path) {
    PluginRegistry registry({});
    try {
        registry.load_library(path);
    } catch (const PluginError& e) {
        return e.what();
    }
    return "";
}

TEST(PluginRegistryRejects, MissingFile) {
    EXPECT_THAT(rejection_of(kFixtures + "/broken/libnothing_here.so"),
                HasSubstr("libnothing_here.so: file not found"));
}

TEST(PluginRegistryRejects, FileThatIsNotASharedLibrary) {
    EXPECT_THAT(rejection_of(broken("not_a_library")), HasSubstr("not a loadable shared library"));
}

TEST(PluginRegistryRejects, LibraryWithoutEntrySymbol) {
    EXPECT_THAT(rejection_of(broken("no_entry")), HasSubstr("no entry symbol pangea_plugin_entry_v1"));
}

TEST(PluginRegistryRejects, LibraryForANewerAbiMajorAndNamesIt) {
    EXPECT_THAT(rejection_of(broken("entry_v2")),
                HasSubstr("exports pangea_plugin_entry_v2: built for plugin ABI major 2, this "
                          "host speaks ABI 1.4"));
}

TEST(PluginRegistryRejects, LibraryThatRefusesTheHandshake) {
    EXPECT_THAT(rejection_of(broken("refuses_handshake")),
                HasSubstr("refused the handshake: it cannot work with host ABI 1.4"));
}

TEST(PluginRegistryRejects, EntryPointThatFails) {
    EXPECT_THAT(rejection_of(broken("entry_fails")), HasSubstr("entry point failed with status 15"));
}

TEST(PluginRegistryRejects, DescriptorOfAnotherAbiMajor) {
    EXPECT_THAT(rejection_of(broken("abi_major2")),
                HasSubstr("built for plugin ABI 2.0, this host speaks ABI 1.4"));
}

TEST(PluginRegistryRejects, VtableTooSmall) {
    EXPECT_THAT(rejection_of(broken("small_vtable")),
                HasSubstr("plugin 'broken' (compress): vtable too small: struct_size is 40 bytes"));
}

TEST(PluginRegistryRejects, NullRequiredSlot) {
    EXPECT_THAT(rejection_of(broken("null_slot")),
                HasSubstr("required vtable slot 2 (after the header) is NULL"));
}

TEST(PluginRegistryRejects, DuplicateNameWithinALibrary) {
    EXPECT_THAT(rejection_of(broken("duplicate_in_library")),
                HasSubstr("duplicate plugin compress/broken within the library"));
}

TEST(PluginRegistryRejects, InvalidPluginName) {
    EXPECT_THAT(rejection_of(broken("bad_name")), HasSubstr("name must be 1-64 characters of [a-z0-9_-]"));
}

TEST(PluginRegistryRejects, UnknownKind) {
    // Its only plugin is of a kind this host does not know, so nothing is left to load.
    EXPECT_THAT(rejection_of(broken("unknown_kind")),
                HasSubstr("plugin 'broken': unknown kind 99 (from a newer ABI?); passed over"));
}

TEST(PluginRegistryRejects, SettingWithADefaultOfTheWrongType) {
    EXPECT_THAT(rejection_of(broken("bad_default")),
                HasSubstr("setting 'level': default \"high\" is not an integer"));
}

TEST(PluginRegistry, CreateFailureCarriesThePluginsReason) {
    PluginRegistry registry({});
    const auto plugins = registry.load_library(broken("failing_create"));
    ASSERT_EQ(plugins.size(), 1u);
    try {
        PluginInstance instance(*plugins[0], {});
        FAIL() << "create() should have failed";
    } catch (const PluginError& e) {
        EXPECT_THAT(e.what(), HasSubstr("compress/broken: create() failed with PANGEA_ERR_IO: "
                                        "cannot reach the moon"));
    }
}

TEST(PluginRegistry, ScanRecordsEveryRejectedLibraryWithItsReason) {
    PluginRegistry registry({{kFixtures + "/broken", "test"}});
    // Only failing_create is a valid library; its create() fails later, not at load.
    ASSERT_EQ(registry.plugins().size(), 1u);
    EXPECT_EQ(registry.plugins()[0]->library_path.filename(), "libfailing_create.so");
    EXPECT_EQ(registry.rejections().size(), 12u);  // 11 broken cases + the text file
    for (const auto& rejection : registry.rejections()) EXPECT_FALSE(rejection.reason.empty());
}

TEST(PluginRegistry, FirstInSearchOrderWinsAndDuplicatesAreReported) {
    PluginRegistry registry({{kFixtures + "/shadow", "first"}, {kFixtures + "/dups", "second"}});
    const PluginDescriptor* dup = registry.find(PANGEA_KIND_COMPRESS, "dup");
    ASSERT_NE(dup, nullptr);
    EXPECT_EQ(dup->library_path.filename(), "libdup_c.so");
    ASSERT_EQ(registry.rejections().size(), 2u);
    EXPECT_THAT(registry.rejections()[0].reason,
                HasSubstr("duplicate plugin compress/dup: already provided by " + kFixtures +
                          "/shadow/libdup_c.so"));
}

TEST(PluginRegistry, WithinOneDirectoryTheOrderIsByFileName) {
    PluginRegistry registry({{kFixtures + "/dups", "test"}});
    EXPECT_EQ(registry.get(PANGEA_KIND_COMPRESS, "dup").library_path.filename(), "libdup_a.so");
    ASSERT_EQ(registry.rejections().size(), 1u);
    EXPECT_EQ(registry.rejections()[0].path.filename(), "libdup_b.so");
}

TEST(PluginRegistry, MissingPluginErrorListsSearchPathAvailableAndRejected) {
    PluginRegistry registry({{kFixtures + "/dups", "test dir"}, {"/nonexistent/dir", "nowhere"}});
    try {
        registry.get(PANGEA_KIND_COMPRESS, "int9");
        FAIL() << "expected a PluginError";
    } catch (const PluginError& e) {
        const std::string text = e.what();
        EXPECT_THAT(text, HasSubstr("no compress plugin named 'int9'. Available: dup."));
        EXPECT_THAT(text, HasSubstr(kFixtures + "/dups  (test dir)"));
        EXPECT_THAT(text, HasSubstr("/nonexistent/dir  (nowhere)"));
        EXPECT_THAT(text, HasSubstr("rejected:\n    " + kFixtures + "/dups/libdup_b.so: duplicate"));
    }
}

TEST(PluginRegistry, PluginOfTheWrongKindIsNamedInTheError) {
    PluginRegistry registry(std::vector<SearchPath>{{PANGEA_TEST_BUILTIN_PLUGINS, "build tree"}});
    try {
        registry.get(PANGEA_KIND_OPTIM, "none");
        FAIL() << "expected a PluginError";
    } catch (const PluginError& e) {
        EXPECT_THAT(e.what(), HasSubstr("no optim plugin named 'none'. Available: faulty, nesterov. (A "
                                        "plugin named 'none' exists as kind compress: is it in "
                                        "the wrong section?)"));
    }
}

TEST(PluginRegistry, LoadsTheBuiltInPlugins) {
    PluginRegistry registry(std::vector<SearchPath>{{PANGEA_TEST_BUILTIN_PLUGINS, "build tree"}});
    EXPECT_TRUE(registry.rejections().empty());
    EXPECT_NE(registry.find(PANGEA_KIND_COMPRESS, "none"), nullptr);
    EXPECT_NE(registry.find(PANGEA_KIND_OPTIM, "nesterov"), nullptr);
    EXPECT_EQ(registry.find(PANGEA_KIND_OPTIM, "none"), nullptr);  // names are per kind
}

TEST(PluginRegistry, DefaultSearchPathReadsPangeaPluginPathFirst) {
    ::setenv("PANGEA_PLUGIN_PATH", "/a:/b::/c", 1);
    const auto path = default_search_path();
    ::unsetenv("PANGEA_PLUGIN_PATH");
    ASSERT_EQ(path.size(), 4u);
    EXPECT_EQ(path[0].directory, "/a");
    EXPECT_EQ(path[2].directory, "/c");
    EXPECT_EQ(path[2].why, "PANGEA_PLUGIN_PATH");
    EXPECT_EQ(path[3].why, "beside the executable");
    EXPECT_EQ(path[3].directory.filename(), "plugins");
}

}  // namespace
}  // namespace pangea

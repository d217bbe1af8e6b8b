#include "plugin_host/plugin_instance.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pangea/compress.h"

namespace pangea {
namespace {

using ::testing::HasSubstr;

const std::string kProbe = std::string(PANGEA_TEST_FIXTURES) + "/good/libprobe.so";

SettingMap probe_settings(bool fail_create = false) {
    return {{"level", {int64_t{3}, "t"}},   {"ratio", {0.5, "t"}},
            {"mode", {std::string("slow"), "t"}}, {"fail_create", {fail_create, "t"}},
            {"key", {std::string("k1"), "t"}}};
}

class PluginInstanceTest : public ::testing::Test {
protected:
    PluginRegistry registry{{}};
    const PluginDescriptor& probe = *registry.load_library(kProbe).at(0);
};

TEST_F(PluginInstanceTest, CreatesWithSettingsAndHostTellsMissingFromWrongType) {
    // The probe's create() fails unless config lookups return NOT_FOUND for a missing key and
    // CONFIG for a key of another type.
    PluginInstance instance(probe, probe_settings());
    EXPECT_NE(instance.handle(), nullptr);
    EXPECT_EQ(instance.last_error(), "");
}

TEST_F(PluginInstanceTest, CreateFailureCarriesTheReportedReason) {
    try {
        PluginInstance instance(probe, probe_settings(true));
        FAIL() << "create() should have failed";
    } catch (const PluginError& e) {
        EXPECT_STREQ(e.what(), "compress/probe: create() failed with PANGEA_ERR_IO: probe was "
                               "asked to fail (key k1)");
    }
}

TEST_F(PluginInstanceTest, MissingRequiredSettingFailsCreateWithItsName) {
    SettingMap settings = probe_settings();
    settings.erase("key");
    try {
        PluginInstance instance(probe, settings);
        FAIL() << "create() should have failed";
    } catch (const PluginError& e) {
        EXPECT_THAT(e.what(), HasSubstr("PANGEA_ERR_CONFIG: setting 'key' is not set"));
    }
}

TEST_F(PluginInstanceTest, NoExceptionCrossesTheAbi) {
    PluginInstance instance(probe, probe_settings());
    const auto& vt = instance.vtable<pangea_compress_vtable>();
    float values[4] = {};
    uint8_t bytes[16] = {};
    size_t written = 0;
    // sdk::Error keeps its status and text.
    EXPECT_EQ(vt.encode(instance.handle(), values, 4, bytes, 16, &written), PANGEA_ERR_UNSUPPORTED);
    EXPECT_EQ(instance.last_error(), "probe: encode is not implemented (level 3, mode slow)");
    // A std::exception becomes INTERNAL with its what().
    EXPECT_EQ(vt.decode(instance.handle(), bytes, 16, values, 4), PANGEA_ERR_INTERNAL);
    EXPECT_EQ(instance.last_error(), "probe: a plain std::exception from decode");
    // Anything else thrown becomes INTERNAL too.
    EXPECT_EQ(vt.decode_accumulate(instance.handle(), bytes, 16, values, 4), PANGEA_ERR_INTERNAL);
    EXPECT_EQ(instance.last_error(), "unknown exception");
    EXPECT_THAT(instance.describe_failure("decode_accumulate", PANGEA_ERR_INTERNAL),
                HasSubstr("compress/probe: decode_accumulate failed with PANGEA_ERR_INTERNAL"));
}

TEST_F(PluginInstanceTest, MovedInstanceIsDestroyedOnceAndLibraryOutlivesRegistry) {
    std::unique_ptr<PluginInstance> kept;
    {
        PluginRegistry local({});
        const PluginDescriptor& plugin = *local.load_library(kProbe).at(0);
        PluginInstance first(plugin, probe_settings());
        void* handle = first.handle();
        PluginInstance second(std::move(first));
        EXPECT_EQ(first.handle(), nullptr);
        EXPECT_EQ(second.handle(), handle);
        kept = std::make_unique<PluginInstance>(std::move(second));
    }
    // The registry (and its descriptor) are gone; the instance still holds the library loaded.
    EXPECT_EQ(kept->last_error(), "");
}

}  // namespace
}  // namespace pangea

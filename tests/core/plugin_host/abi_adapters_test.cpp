// Plugins built against the frozen ABI 1.0 and 1.1 headers (tests/fixtures/abi_v1_0_plugins.c),
// loaded into today's host: every kind is adapted to today's layout, the slots they lack take
// their documented defaults, and their own slots are the ones called.
#include "plugin_host/abi_adapters.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <vector>

#include "pangea/v1_0/compress.h"
#include "plugin_host/plugin_instance.hpp"

namespace pangea {
namespace {

using ::testing::HasSubstr;

const std::string kOld = std::string(PANGEA_TEST_FIXTURES) + "/old/libabi_v1_0.so";

class OldPluginsTest : public ::testing::Test {
protected:
    PluginRegistry registry{{}};
    std::map<std::string, const PluginDescriptor*> plugins = [this] {
        std::map<std::string, const PluginDescriptor*> out;
        for (const PluginDescriptor* plugin : registry.load_library(kOld)) out[plugin->id()] = plugin;
        return out;
    }();
    PluginInstance make(const std::string& id) { return PluginInstance(*plugins.at(id), {}); }
};

TEST_F(OldPluginsTest, EveryKindLoadsAndTheNegotiationIsRecorded) {
    ASSERT_EQ(plugins.size(), 5u);
    for (const char* id : {"compress/old-copy", "optim/old-sgd", "storage/old-memory", "transport/old-1-0"}) {
        EXPECT_EQ(plugins.at(id)->abi_version, (1u << 16) | 0u) << id;
        // The library answered our offer of today's version with the newest it knows, 1.1.
        EXPECT_EQ(plugins.at(id)->spoken_abi_version, (1u << 16) | 1u) << id;
    }
    EXPECT_EQ(plugins.at("transport/old-1-1")->abi_version, (1u << 16) | 1u);
}

TEST_F(OldPluginsTest, CompressGetsTodaysLayoutWithTheDefaultErrorBound) {
    PluginInstance copy = make("compress/old-copy");
    const auto& vt = copy.vtable<pangea_compress_vtable>();
    EXPECT_EQ(vt.header.struct_size, sizeof(pangea_compress_vtable));
    EXPECT_EQ(vt.error_bound(copy.handle()), PANGEA_COMPRESS_DEFAULT_ERROR_BOUND);  // 1.2's slot
    EXPECT_EQ(vt.capabilities(copy.handle()), 0u);
    const std::vector<float> input = {1.5f, -2.0f, 3.25f};
    std::vector<uint8_t> bytes(vt.max_encoded_size(copy.handle(), input.size()));
    size_t written = 0;
    ASSERT_EQ(vt.encode(copy.handle(), input.data(), input.size(), bytes.data(), bytes.size(), &written), PANGEA_OK);
    std::vector<float> acc = {1, 1, 1};
    ASSERT_EQ(vt.decode_accumulate(copy.handle(), bytes.data(), written, acc.data(), acc.size()), PANGEA_OK);
    EXPECT_EQ(acc, (std::vector<float>{2.5f, -1.0f, 4.25f}));
    EXPECT_EQ(vt.decode(copy.handle(), bytes.data(), written - 1, acc.data(), acc.size()), PANGEA_ERR_CORRUPT);
    EXPECT_EQ(copy.last_error(), "old-copy: length mismatch");
}

TEST_F(OldPluginsTest, OptimStepsAndKeepsItsState) {
    PluginInstance sgd = make("optim/old-sgd");
    const auto& vt = sgd.vtable<pangea_optim_vtable>();
    std::vector<float> params = {1, 2}, grad = {2, -2};
    ASSERT_EQ(vt.init(sgd.handle(), 2), PANGEA_OK);
    ASSERT_EQ(vt.step(sgd.handle(), params.data(), grad.data(), 2), PANGEA_OK);
    EXPECT_EQ(params, (std::vector<float>{0, 3}));
    EXPECT_EQ(vt.step(sgd.handle(), params.data(), grad.data(), 1), PANGEA_ERR_INVALID_ARGUMENT);
    std::vector<uint8_t> state(vt.state_size(sgd.handle()));
    size_t written = 0;
    ASSERT_EQ(vt.save_state(sgd.handle(), state.data(), state.size(), &written), PANGEA_OK);
    EXPECT_EQ(written, 16u);
}

TEST_F(OldPluginsTest, StorageRoundTripsAnObject) {
    PluginInstance memory = make("storage/old-memory");
    const auto& vt = memory.vtable<pangea_storage_vtable>();
    pangea_storage_writer* writer = nullptr;
    ASSERT_EQ(vt.open_write(memory.handle(), "run/a", &writer), PANGEA_OK);
    ASSERT_EQ(vt.write(memory.handle(), writer, "hello", 5), PANGEA_OK);
    ASSERT_EQ(vt.commit(memory.handle(), writer), PANGEA_OK);
    char out[8] = {};
    size_t read = 0;
    ASSERT_EQ(vt.read(memory.handle(), "run/a", 1, out, sizeof out, &read), PANGEA_OK);
    EXPECT_EQ(std::string(out, read), "ello");
    EXPECT_EQ(vt.remove(memory.handle(), "run/b"), PANGEA_ERR_NOT_FOUND);
    EXPECT_EQ(memory.last_error(), "old-memory: no such object");
}

TEST_F(OldPluginsTest, ATransportOf1_0AnswersTheAllReduceOf1_1WithUnsupported) {
    PluginInstance old = make("transport/old-1-0");
    const auto& vt = old.vtable<pangea_transport_vtable>();
    EXPECT_EQ(vt.header.struct_size, sizeof(pangea_transport_vtable));
    float data[2] = {1, 2};
    EXPECT_EQ(vt.allreduce_sum_f32(old.handle(), nullptr, nullptr, 0, 2, data, 2, 1000), PANGEA_ERR_UNSUPPORTED);
    EXPECT_EQ(data[0], 1);  // the default touches nothing
    char bound[64];
    pangea_listener* listener = nullptr;
    EXPECT_EQ(vt.listen(old.handle(), "127.0.0.1:0", &listener, bound, sizeof bound), PANGEA_ERR_UNSUPPORTED);
    EXPECT_EQ(old.last_error(), "old transport: listen is not offered");
}

TEST_F(OldPluginsTest, ATransportOf1_1KeepsItsOwnAllReduce) {
    PluginInstance newer = make("transport/old-1-1");
    float data[2] = {1, 2};
    EXPECT_EQ(newer.vtable<pangea_transport_vtable>().allreduce_sum_f32(newer.handle(), nullptr, nullptr, 0, 2, data,
                                                                         2, 1000),
              PANGEA_OK);
    EXPECT_EQ(data[1], 4);
}

// ---- the adapters on hand-made layouts: sizes decide, newer plugins are read as a prefix

size_t dummy_max(void*, size_t n) { return n; }
pangea_status dummy_encode(void*, const float*, size_t, uint8_t*, size_t, size_t*) { return PANGEA_OK; }
pangea_status dummy_decode(void*, const uint8_t*, size_t, float*, size_t) { return PANGEA_OK; }
uint64_t dummy_capabilities(void*) { return 0; }
double tight_bound(void*) { return 0.25; }
pangea_status dummy_create(const pangea_host_v1_0*, void**) { return PANGEA_OK; }
void dummy_destroy(void*) {}
const char* dummy_error(void*) { return ""; }

TEST(AbiAdapters, ACompressVtableOfTodayKeepsItsErrorBoundAndANullOneGetsTheDefault) {
    pangea_compress_vtable today{};
    today.header = {sizeof today, reinterpret_cast<decltype(today.header.create)>(&dummy_create), &dummy_destroy,
                    &dummy_error};
    today.max_encoded_size = &dummy_max;
    today.encode = &dummy_encode;
    today.decode = &dummy_decode;
    today.decode_accumulate = &dummy_decode;
    today.capabilities = &dummy_capabilities;
    today.error_bound = &tight_bound;
    AdaptedVtable out;
    ASSERT_EQ(adapt_vtable(PANGEA_KIND_COMPRESS, &today, &out), "");
    EXPECT_EQ(std::get<pangea_compress_vtable>(out).error_bound(nullptr), 0.25);
    today.error_bound = nullptr;
    ASSERT_EQ(adapt_vtable(PANGEA_KIND_COMPRESS, &today, &out), "");
    EXPECT_EQ(std::get<pangea_compress_vtable>(out).error_bound(nullptr), PANGEA_COMPRESS_DEFAULT_ERROR_BOUND);
}

TEST(AbiAdapters, AVtableFromANewerMinorIsReadUpToTodaysSize) {
    struct Newer {
        pangea_compress_vtable today;
        void (*appended_later)();  // a slot this host does not know: never read
    } newer{};
    newer.today.header = {sizeof newer, reinterpret_cast<decltype(newer.today.header.create)>(&dummy_create),
                          &dummy_destroy, &dummy_error};
    newer.today.max_encoded_size = &dummy_max;
    newer.today.encode = &dummy_encode;
    newer.today.decode = &dummy_decode;
    newer.today.decode_accumulate = &dummy_decode;
    newer.today.capabilities = &dummy_capabilities;
    newer.today.error_bound = &tight_bound;
    AdaptedVtable out;
    ASSERT_EQ(adapt_vtable(PANGEA_KIND_COMPRESS, &newer, &out), "");
    EXPECT_EQ(std::get<pangea_compress_vtable>(out).header.struct_size, sizeof(pangea_compress_vtable));
    EXPECT_EQ(std::get<pangea_compress_vtable>(out).error_bound(nullptr), 0.25);
}

TEST(AbiAdapters, TooSmallOrMissingRequiredSlotsAreRefusedWithTheReason) {
    pangea_compress_vtable_v1_0 old{};
    old.header = {sizeof old - 1, &dummy_create, &dummy_destroy, &dummy_error};
    AdaptedVtable out;
    EXPECT_EQ(adapt_vtable(PANGEA_KIND_COMPRESS, &old, &out),
              "vtable too small: struct_size is " + std::to_string(sizeof old - 1) +
                  " bytes, a compress vtable of ABI 1.0 has " + std::to_string(sizeof old));
    old.header.struct_size = sizeof old;
    EXPECT_EQ(adapt_vtable(PANGEA_KIND_COMPRESS, &old, &out),
              "required vtable slot 0 (after the header) is NULL");
    EXPECT_EQ(adapt_vtable(PANGEA_KIND_OPTIM, nullptr, &out), "vtable is NULL");
}

TEST(AbiAdapters, DescriptorsAreSizeLed) {
    pangea_library small{};
    small.struct_size = PANGEA_LIBRARY_SIZE_1_0 - 1;
    pangea_library out;
    EXPECT_EQ(adapt_library(&small, &out), "library descriptor too small: struct_size is " +
                                               std::to_string(PANGEA_LIBRARY_SIZE_1_0 - 1) + " bytes, ABI 1.0's has " +
                                               std::to_string(PANGEA_LIBRARY_SIZE_1_0));
    // A setting array with a larger stride (a newer pangea_setting) is read entry by entry.
    struct WideSetting {
        pangea_setting setting;
        double appended_later;
    } wide[2] = {{{"first", PANGEA_SETTING_INT, "1", "one", 1, 0, nullptr}, 0},
                 {{"second", PANGEA_SETTING_BOOL, "true", "two", 1, 0, nullptr}, 0}};
    const pangea_setting second = setting_at(&wide[0].setting, sizeof(WideSetting), 1);
    EXPECT_STREQ(second.name, "second");
    EXPECT_EQ(second.type, PANGEA_SETTING_BOOL);
}

}  // namespace
}  // namespace pangea

// The checkpoint format through the real storage/local plugin in a temporary directory: round
// trip, the safetensors layout, the shared state split among a step's members (once per run, not
// once per node), what a damaged or incomplete checkpoint does, retention, and the asynchronous
// checkpointer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "checkpoint/checkpointer.hpp"
#include "common/json.hpp"
#include "plugin_host/plugin_instance.hpp"

namespace pangea {
namespace {

namespace fs = std::filesystem;

class Checkpoints : public ::testing::Test {
protected:
    void SetUp() override {
        dir = fs::temp_directory_path() / ("pangea-checkpoint-test-" + std::to_string(std::random_device()()));
        registry.emplace(std::vector<SearchPath>{{PANGEA_TEST_BUILTIN_PLUGINS, "build tree"}});
        const PluginDescriptor& plugin = registry->get(PANGEA_KIND_STORAGE, "local");
        SettingMap settings = plugin.default_settings();
        settings["path"] = {dir.string(), "test"};
        store.emplace(PluginInstance(plugin, settings));
        shape.preset = "custom";
        shape.layers = 1, shape.d_model = 8, shape.heads = 2, shape.kv_heads = 1, shape.ffn = 16, shape.vocab = 11;
        context = llama_checkpoint_context("test-run", 0, shape, 32);
    }
    void TearDown() override { fs::remove_all(dir); }

    TrainingState state(int64_t step) const {
        TrainingState s;
        s.step = step;
        s.params.resize(parameter_count(shape));
        for (size_t i = 0; i < s.params.size(); ++i) s.params[i] = static_cast<float>(i) * 0.5f + step;
        s.outer_optimizer = {1, 2, 3, static_cast<uint8_t>(step)};
        s.inner_optimizer = std::vector<uint8_t>(1000, static_cast<uint8_t>(step));
        s.sampler_position = 77 * step;
        s.manifest = "[run]\nname = \"test-run\"\n";
        return s;
    }
    fs::path file(int64_t step, const std::string& part) const { return dir / ("run/" + checkpoint_dir("", step) + part); }
    // Node `node`'s part of a step that `members` committed.
    TrainingState member_state(int64_t step, int node, std::vector<int> members) const {
        TrainingState s = state(step);
        s.members = std::move(members);
        s.inner_optimizer = std::vector<uint8_t>(100 + node, static_cast<uint8_t>(node));
        s.sampler_position = 1000 * node + step;
        return s;
    }
    CheckpointContext context_of(int node) const {
        CheckpointContext c = context;
        c.node = node;
        return c;
    }

    fs::path dir;
    std::optional<PluginRegistry> registry;
    std::optional<ObjectStore> store;
    ModelShape shape;
    CheckpointContext context;
    const std::string prefix = "run/";
};

TEST_F(Checkpoints, AStateRoundTripsAndLatestNamesTheNewest) {
    write_checkpoint(*store, prefix, state(2), context);
    write_checkpoint(*store, prefix, state(4), context);
    EXPECT_EQ(latest_checkpoint(*store, prefix).value_or(-1), 4);
    EXPECT_EQ(resolve_checkpoint(*store, prefix, "latest"), 4);
    const TrainingState back = read_checkpoint(*store, prefix, 2, 0, shape);
    const TrainingState expected = state(2);
    EXPECT_EQ(back.step, 2);
    EXPECT_EQ(back.params, expected.params);
    EXPECT_EQ(back.outer_optimizer, expected.outer_optimizer);
    EXPECT_EQ(back.inner_optimizer, expected.inner_optimizer);
    EXPECT_EQ(back.sampler_position, expected.sampler_position);
    EXPECT_EQ(back.manifest, expected.manifest);
    ASSERT_EQ(list_checkpoints(*store, prefix).size(), 2u);
}

TEST_F(Checkpoints, TheModelIsSafetensorsWithHuggingFaceNamesAndAConfig) {
    write_checkpoint(*store, prefix, state(1), context);
    std::ifstream in(file(1, "shared/model.safetensors.0-of-1"), std::ios::binary);
    uint64_t header_bytes = 0;
    in.read(reinterpret_cast<char*>(&header_bytes), 8);
    EXPECT_EQ((8 + header_bytes) % 8, 0u) << "tensors start 8-byte aligned";
    std::string header(header_bytes, '\0');
    in.read(header.data(), static_cast<std::streamsize>(header_bytes));
    const Json json = parse_json(header);
    ASSERT_TRUE(json.contains("model.layers.0.self_attn.q_proj.weight")) << header;
    const Json& q = json["model.layers.0.self_attn.q_proj.weight"];
    EXPECT_EQ(q["dtype"], "F32");
    ASSERT_EQ(q["shape"].size(), 2u);
    EXPECT_EQ(q["shape"][0], 8);
    for (const char* name : {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                             "model.layers.0.mlp.gate_proj.weight", "model.layers.0.post_attention_layernorm.weight"})
        EXPECT_TRUE(json.contains(name)) << name;
    std::ifstream config_file(file(1, "node-0/config.json"));
    const Json config = parse_json(std::string(std::istreambuf_iterator<char>(config_file), {}));
    EXPECT_EQ(config["model_type"], "llama");
    EXPECT_EQ(config["num_key_value_heads"], 1);
    EXPECT_EQ(config["max_position_embeddings"], 32);
}

TEST_F(Checkpoints, ADamagedPartIsRefusedByName) {
    write_checkpoint(*store, prefix, state(3), context);
    {
        std::fstream f(file(3, "shared/outer_optimizer.bin.0-of-1"), std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(1);
        f.put('X');
    }
    try {
        read_checkpoint(*store, prefix, 3, 0, shape);
        FAIL() << "a corrupt part was accepted";
    } catch (const CheckpointError& e) {
        EXPECT_NE(std::string(e.what()).find("outer_optimizer.bin.0-of-1 is corrupt"), std::string::npos) << e.what();
    }
    bool ok = true;
    const auto lines = verify_checkpoint(*store, prefix, 3, &ok);
    EXPECT_FALSE(ok);
    EXPECT_EQ(lines.size(), 5u);
}

TEST_F(Checkpoints, ATruncatedPartIsRefusedByName) {
    write_checkpoint(*store, prefix, state(3), context);
    fs::resize_file(file(3, "shared/model.safetensors.0-of-1"), 100);
    try {
        read_checkpoint(*store, prefix, 3, 0, shape);
        FAIL() << "a truncated part was accepted";
    } catch (const CheckpointError& e) {
        EXPECT_NE(std::string(e.what()).find("model.safetensors.0-of-1 is 100 bytes, the header says"), std::string::npos)
            << e.what();
    }
}

TEST_F(Checkpoints, AnotherModelShapeIsRefused) {
    write_checkpoint(*store, prefix, state(1), context);
    ModelShape other = shape;
    other.ffn = 32;
    EXPECT_THROW(read_checkpoint(*store, prefix, 1, 0, other), CheckpointError);
}

TEST_F(Checkpoints, AnIncompleteCheckpointIsNeitherListedNorLatest) {
    write_checkpoint(*store, prefix, state(2), context);
    write_checkpoint(*store, prefix, state(4), context);
    // A save of step 6 that died before its header: the parts are there, the header is not.
    fs::remove(file(4, "node-0.json"));
    store->put(prefix + "latest", std::string("step-00000002\n"));
    EXPECT_EQ(list_checkpoints(*store, prefix).size(), 1u);
    EXPECT_THROW(read_checkpoint(*store, prefix, 4, 0, shape), CheckpointError);
    EXPECT_EQ(read_checkpoint(*store, prefix, resolve_checkpoint(*store, prefix, "latest"), 0, shape).step, 2);
}

TEST_F(Checkpoints, RetentionKeepsTheNewestAndRemovesTheRestWhole) {
    for (int64_t step : {1, 2, 3, 4}) write_checkpoint(*store, prefix, state(step), context);
    fs::remove(file(1, "node-0.json"));  // an old incomplete one
    const auto removed = prune_checkpoints(*store, prefix, 2);
    EXPECT_EQ(removed, (std::vector<int64_t>{1, 2}));
    const auto left = list_checkpoints(*store, prefix);
    ASSERT_EQ(left.size(), 2u);
    EXPECT_EQ(left[0].step, 3);
    EXPECT_FALSE(fs::exists(dir / "run/step-00000001")) << "nothing of a removed checkpoint is left";
    EXPECT_FALSE(fs::exists(dir / "run/step-00000002"));
}

TEST_F(Checkpoints, TheCheckpointerWritesInTheBackgroundAndSkipsWhenToldTo) {
    CheckpointerOptions options{prefix, context, 10, true, true};
    {
        Checkpointer checkpointer(*store, options);
        for (int64_t step = 1; step <= 5; ++step) EXPECT_TRUE(checkpointer.save(state(step)));
        checkpointer.wait();
        EXPECT_EQ(checkpointer.stats().saved, 5);
    }
    EXPECT_EQ(latest_checkpoint(*store, prefix).value_or(-1), 5);
    options.wait_when_busy = false;
    options.keep = 2;
    Checkpointer skipping(*store, options);
    int accepted = 0;
    for (int64_t step = 6; step <= 40; ++step) accepted += skipping.save(state(step)) ? 1 : 0;
    skipping.wait();
    const CheckpointStats stats = skipping.stats();
    EXPECT_EQ(stats.saved, accepted);
    EXPECT_EQ(stats.saved + stats.skipped, 35);
    EXPECT_EQ(list_checkpoints(*store, prefix).size(), 2u);
    EXPECT_EQ(read_checkpoint(*store, prefix, resolve_checkpoint(*store, prefix, "latest"), 0, shape).step, stats.last_step);
}

TEST_F(Checkpoints, TheSharedStateIsWrittenOncePerRunSplitAmongTheMembers) {
    const std::vector<int> members{0, 2, 5};
    for (int node : members) {
        EXPECT_EQ(write_checkpoint(*store, prefix, member_state(7, node, members), context_of(node)), node == 5)
            << "only the last member's header completes the step";
        if (node != 5) {
            EXPECT_THROW(read_checkpoint(*store, prefix, 7, 0, shape), CheckpointError) << "incomplete";
        }
    }
    EXPECT_EQ(latest_checkpoint(*store, prefix).value_or(-1), 7);
    // Each shared object is on storage once: three pieces that add up to one copy.
    uint64_t pieces = 0;
    const auto shared = store->list(prefix + "step-00000007/shared/");
    for (const auto& [key, bytes] : shared) pieces += bytes;
    EXPECT_EQ(shared.size(), 6u) << "model.safetensors and outer_optimizer.bin, 3 pieces each";
    const TrainingState one = state(7);
    EXPECT_LT(pieces, one.params.size() * 4 + 4096) << "not three copies";
    EXPECT_GT(pieces, one.params.size() * 4);
    for (int node : members) {
        const TrainingState back = read_checkpoint(*store, prefix, 7, node, shape);
        EXPECT_EQ(back.params, one.params) << "node " << node;
        EXPECT_EQ(back.outer_optimizer, one.outer_optimizer);
        EXPECT_EQ(back.inner_optimizer, member_state(7, node, members).inner_optimizer) << "each node's own";
        EXPECT_EQ(back.sampler_position, member_state(7, node, members).sampler_position);
        EXPECT_EQ(back.members, members);
    }
    try {
        read_checkpoint(*store, prefix, 7, 1, shape);
        FAIL() << "node 1 was not a member";
    } catch (const CheckpointError& e) {
        EXPECT_NE(std::string(e.what()).find("has no part of node 1: the nodes that committed that step were 0, 2, 5"),
                  std::string::npos)
            << e.what();
    }
    const fs::path out = dir / "export";
    export_checkpoint(*store, prefix, 7, out);
    EXPECT_TRUE(fs::exists(out / "config.json"));
    uint64_t model_pieces = 0;
    for (const auto& [key, bytes] : store->list(prefix + "step-00000007/shared/model.safetensors.")) model_pieces += bytes;
    EXPECT_EQ(fs::file_size(out / "model.safetensors"), model_pieces) << "the pieces put back together";
}

TEST_F(Checkpoints, LatestIsTheNewestStepEveryMemberFinished) {
    const std::vector<int> members{0, 1, 2};
    for (int node : members) write_checkpoint(*store, prefix, member_state(16, node, members), context_of(node));
    // Killed mid-save: node 1 finished step 18, nodes 0 and 2 did not.
    write_checkpoint(*store, prefix, member_state(18, 1, members), context_of(1));
    EXPECT_EQ(resolve_checkpoint(*store, prefix, "latest"), 16) << "whatever each node's own progress";
    EXPECT_EQ(latest_checkpoint(*store, prefix).value_or(-1), 16);
    const auto all = list_checkpoints(*store, prefix, true);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[1].missing, (std::vector<int>{0, 2}));
    EXPECT_EQ(list_checkpoints(*store, prefix).size(), 1u);
    try {
        read_checkpoint(*store, prefix, 18, 1, shape);
        FAIL() << "an incomplete step was read";
    } catch (const CheckpointError& e) {
        EXPECT_NE(std::string(e.what()).find("node(s) 0, 2 of its members (0, 1, 2) did not finish"), std::string::npos)
            << e.what();
    }
    bool ok = true;
    const auto lines = verify_checkpoint(*store, prefix, 18, &ok);
    EXPECT_FALSE(ok);
    EXPECT_NE(lines.front().find("node-0.json: MISSING"), std::string::npos) << lines.front();
    // Retention never removes the step a member may still be finishing, nor the latest.
    EXPECT_TRUE(prune_checkpoints(*store, prefix, 1).empty());
    EXPECT_EQ(list_checkpoints(*store, prefix, true).size(), 2u);
    // Node 1 resumes from 16: its part of the abandoned step 18 is withdrawn.
    EXPECT_EQ(withdraw_parts_after(*store, prefix, 1, 16), (std::vector<int64_t>{18}));
    EXPECT_EQ(list_checkpoints(*store, prefix, true).size(), 1u);
    EXPECT_TRUE(withdraw_parts_after(*store, prefix, 0, 16).empty());
}

TEST_F(Checkpoints, AFailingStoreIsReportedAndLeavesTheLatestAsItWas) {
    write_checkpoint(*store, prefix, state(1), context);
    CheckpointerOptions options{prefix, context, 3, true, true};
    Checkpointer checkpointer(*store, options);
    TrainingState wrong = state(2);
    wrong.params.resize(3);  // does not fit the model: the write fails
    checkpointer.save(std::move(wrong));
    checkpointer.wait();
    EXPECT_EQ(checkpointer.stats().failed, 1);
    EXPECT_NE(checkpointer.stats().last_error.find("parameters"), std::string::npos);
    EXPECT_EQ(latest_checkpoint(*store, prefix).value_or(-1), 1);
}

}  // namespace
}  // namespace pangea

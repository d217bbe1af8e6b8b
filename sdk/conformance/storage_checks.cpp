// Checks for checkpoint storage plugins (pangea/storage.h). Every check works under a prefix of
// its own and removes what it wrote, so the runner can point at a real bucket or directory.
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "conformance.hpp"
#include "pangea/storage.h"

namespace pangea::conformance {
namespace {

struct Store {
    PluginInstance instance;
    const pangea_storage_vtable& vt;
    std::string prefix;

    explicit Store(const Subject& subject)
        : instance(subject.make()), vt(instance.vtable<pangea_storage_vtable>()) {
        std::random_device random;
        prefix = "pangea-conformance-" + std::to_string(random()) + "/";
    }
    ~Store() {  // leave nothing behind, if the store lets us
        try {
            for (const auto& [key, size] : list(prefix)) vt.remove(instance.handle(), key.c_str());
        } catch (const std::exception&) {
        }
    }
    void ok(const char* call, pangea_status status) const {
        expect(status == PANGEA_OK, instance.describe_failure(call, status));
    }
    std::string key(const std::string& name) const { return prefix + name; }

    pangea_storage_writer* open(const std::string& k) {
        pangea_storage_writer* writer = nullptr;
        ok("open_write", vt.open_write(instance.handle(), k.c_str(), &writer));
        expect(writer != nullptr, "open_write returned PANGEA_OK and no writer");
        return writer;
    }
    void put(const std::string& k, const std::vector<uint8_t>& bytes) {
        pangea_storage_writer* writer = open(k);
        const pangea_status status = vt.write(instance.handle(), writer, bytes.data(), bytes.size());
        if (status != PANGEA_OK) vt.abort(instance.handle(), writer);
        ok("write", status);
        ok("commit", vt.commit(instance.handle(), writer));
    }
    std::vector<uint8_t> get(const std::string& k, uint64_t offset, size_t bytes) {
        std::vector<uint8_t> out(bytes);
        size_t read = 0;
        ok("read", vt.read(instance.handle(), k.c_str(), offset, out.data(), out.size(), &read));
        out.resize(read);
        return out;
    }
    pangea_status stat(const std::string& k, uint64_t* size) { return vt.stat(instance.handle(), k.c_str(), size); }
    std::vector<std::pair<std::string, uint64_t>> list(const std::string& p) {
        std::vector<std::pair<std::string, uint64_t>> out;
        ok("list", vt.list(instance.handle(), p.c_str(),
                           [](void* user, const char* key, uint64_t size) {
                               static_cast<decltype(out)*>(user)->emplace_back(key, size);
                               return 0;
                           },
                           &out));
        return out;
    }
};

// A writer that a failed check (an exception) aborts on its way out: only commit or abort releases
// a writer, so a check that throws between open and abort would leak it (LeakSanitizer found this).
struct OpenWriter {
    Store& store;
    pangea_storage_writer* writer;
    pangea_storage_writer* release() { return std::exchange(writer, nullptr); }
    ~OpenWriter() { store.vt.abort(store.instance.handle(), writer); }  // abort accepts NULL
};

std::vector<uint8_t> pattern(size_t bytes, uint32_t seed) {
    std::vector<uint8_t> out(bytes);
    std::mt19937 random(seed);
    for (auto& b : out) b = static_cast<uint8_t>(random());
    return out;
}

// Chunk i of the large object: cheap to make again when reading it back.
void fill_chunk(std::vector<uint8_t>& chunk, uint64_t index) {
    uint64_t x = 0x9e3779b97f4a7c15ull * (index + 1);
    for (size_t i = 0; i + 8 <= chunk.size(); i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        std::memcpy(chunk.data() + i, &x, 8);
    }
}

}  // namespace

void check_storage(Report& report, const Subject& subject) {
    report.run(subject.check_name("a small object round-trips, and ranges read the right bytes"), [&] {
        Store store(subject);
        const auto bytes = pattern(100000, 1);
        store.put(store.key("a/small.bin"), bytes);
        expect(store.get(store.key("a/small.bin"), 0, bytes.size() + 10) == bytes, "the object read back differs");
        const auto middle = store.get(store.key("a/small.bin"), 12345, 1000);
        expect(middle == std::vector<uint8_t>(bytes.begin() + 12345, bytes.begin() + 13345), "a range read differs");
        expect(store.get(store.key("a/small.bin"), bytes.size() - 5, 100).size() == 5,
               "a read past the end must return what is left");
        expect(store.get(store.key("a/small.bin"), bytes.size() + 100, 10).empty(), "a read beyond the end must return 0 bytes");
        uint64_t size = 0;
        store.ok("stat", store.stat(store.key("a/small.bin"), &size));
        expect(size == bytes.size(), "stat says " + std::to_string(size) + " bytes, wrote " + std::to_string(bytes.size()));
    });

    report.run(subject.check_name("an empty object round-trips"), [&] {
        Store store(subject);
        store.put(store.key("empty"), {});
        uint64_t size = 1;
        store.ok("stat", store.stat(store.key("empty"), &size));
        expect(size == 0, "stat of an empty object says " + std::to_string(size));
        expect(store.get(store.key("empty"), 0, 10).empty(), "an empty object read back bytes");
    });

    const uint64_t large = subject.large_object_bytes;
    report.run(subject.check_name("a " + std::to_string(large >> 20) + " MiB object round-trips in chunks"), [&] {
        Store store(subject);
        const size_t chunk_bytes = 8u << 20;
        std::vector<uint8_t> chunk(chunk_bytes), expected(chunk_bytes);
        pangea_storage_writer* writer = store.open(store.key("large.bin"));
        for (uint64_t at = 0, i = 0; at < large; at += chunk_bytes, ++i) {
            chunk.resize(std::min<uint64_t>(chunk_bytes, large - at));
            fill_chunk(chunk, i);
            const pangea_status status = store.vt.write(store.instance.handle(), writer, chunk.data(), chunk.size());
            if (status != PANGEA_OK) store.vt.abort(store.instance.handle(), writer);
            store.ok("write", status);
        }
        store.ok("commit", store.vt.commit(store.instance.handle(), writer));
        uint64_t size = 0;
        store.ok("stat", store.stat(store.key("large.bin"), &size));
        expect(size == large, "stat says " + std::to_string(size) + " bytes, wrote " + std::to_string(large));
        for (uint64_t at = 0, i = 0; at < large; at += chunk_bytes, ++i) {
            expected.resize(std::min<uint64_t>(chunk_bytes, large - at));
            fill_chunk(expected, i);
            expect(store.get(store.key("large.bin"), at, expected.size()) == expected,
                   "chunk " + std::to_string(i) + " (at byte " + std::to_string(at) + ") read back differs");
        }
    });

    report.run(subject.check_name("an object is invisible until commit, and abort leaves nothing"), [&] {
        Store store(subject);
        uint64_t size = 0;
        OpenWriter writer{store, store.open(store.key("pending"))};
        const auto bytes = pattern(5000, 2);
        store.ok("write", store.vt.write(store.instance.handle(), writer.writer, bytes.data(), bytes.size()));
        expect(store.stat(store.key("pending"), &size) == PANGEA_ERR_NOT_FOUND, "an uncommitted object is visible to stat");
        expect(store.list(store.prefix).empty(), "an uncommitted object is listed");
        store.vt.abort(store.instance.handle(), writer.release());
        expect(store.stat(store.key("pending"), &size) == PANGEA_ERR_NOT_FOUND, "an aborted object is visible");
        expect(store.list(store.prefix).empty(), "an aborted object is listed");
        // Aborting a replacement keeps the old object whole.
        store.put(store.key("kept"), bytes);
        writer.writer = store.open(store.key("kept"));
        const auto other = pattern(7000, 3);
        store.ok("write", store.vt.write(store.instance.handle(), writer.writer, other.data(), other.size()));
        expect(store.get(store.key("kept"), 0, 10000) == bytes, "the old object changed while a replacement was written");
        store.vt.abort(store.instance.handle(), writer.release());
        expect(store.get(store.key("kept"), 0, 10000) == bytes, "an aborted replacement changed the old object");
        store.put(store.key("kept"), other);
        expect(store.get(store.key("kept"), 0, 10000) == other, "a committed replacement is not what was written");
    });

    report.run(subject.check_name("list returns the keys under a prefix, sorted, with sizes"), [&] {
        Store store(subject);
        store.put(store.key("step-2/b"), pattern(20, 4));
        store.put(store.key("step-10/a"), pattern(30, 5));
        store.put(store.key("step-1/a"), pattern(10, 6));
        store.put(store.key("other"), pattern(1, 7));
        const auto all = store.list(store.key("step-"));
        const std::vector<std::pair<std::string, uint64_t>> expected = {
            {store.key("step-1/a"), 10}, {store.key("step-10/a"), 30}, {store.key("step-2/b"), 20}};
        expect(all == expected, "list(\"" + store.key("step-") + "\") returned " + std::to_string(all.size()) +
                                    " keys, not the 3 expected in order with their sizes");
        expect(store.list(store.key("step-1/")).size() == 1, "list of a directory-like prefix");
        expect(store.list(store.key("nothing-here")).empty(), "list of an absent prefix must be empty");
    });

    report.run(subject.check_name("a missing object is PANGEA_ERR_NOT_FOUND for read, stat and remove"), [&] {
        Store store(subject);
        uint64_t size = 0;
        std::vector<uint8_t> buffer(10);
        size_t read = 0;
        expect(store.vt.read(store.instance.handle(), store.key("missing").c_str(), 0, buffer.data(), buffer.size(), &read) ==
                   PANGEA_ERR_NOT_FOUND, "read of a missing object");
        expect(store.stat(store.key("missing"), &size) == PANGEA_ERR_NOT_FOUND, "stat of a missing object");
        expect(store.vt.remove(store.instance.handle(), store.key("missing").c_str()) == PANGEA_ERR_NOT_FOUND,
               "remove of a missing object");
        store.put(store.key("gone"), pattern(10, 8));
        store.ok("remove", store.vt.remove(store.instance.handle(), store.key("gone").c_str()));
        expect(store.stat(store.key("gone"), &size) == PANGEA_ERR_NOT_FOUND, "a removed object is still visible");
    });

    report.run(subject.check_name("concurrent writers of different keys"), [&] {
        Store store(subject);
        constexpr int kWriters = 4;
        std::vector<std::string> errors(kWriters);
        std::vector<std::thread> threads;
        for (int w = 0; w < kWriters; ++w)
            threads.emplace_back([&, w] {
                try {
                    pangea_storage_writer* writer = store.open(store.key("w" + std::to_string(w)));
                    for (uint32_t i = 0; i < 16; ++i) {
                        const auto part = pattern(64 << 10, static_cast<uint32_t>(w * 100 + i));
                        store.ok("write", store.vt.write(store.instance.handle(), writer, part.data(), part.size()));
                    }
                    store.ok("commit", store.vt.commit(store.instance.handle(), writer));
                } catch (const std::exception& e) {
                    errors[w] = e.what();
                }
            });
        for (auto& t : threads) t.join();
        for (int w = 0; w < kWriters; ++w) {
            expect(errors[w].empty(), "writer " + std::to_string(w) + ": " + errors[w]);
            std::vector<uint8_t> expected;
            for (uint32_t i = 0; i < 16; ++i) {
                const auto part = pattern(64 << 10, static_cast<uint32_t>(w * 100 + i));
                expected.insert(expected.end(), part.begin(), part.end());
            }
            expect(store.get(store.key("w" + std::to_string(w)), 0, expected.size() + 1) == expected,
                   "writer " + std::to_string(w) + "'s object is not what it wrote");
        }
    });

    report.run(subject.check_name("a bad key is refused, not written"), [&] {
        Store store(subject);
        pangea_storage_writer* writer = nullptr;
        const pangea_status status = store.vt.open_write(store.instance.handle(), "", &writer);
        if (status == PANGEA_OK) store.vt.abort(store.instance.handle(), writer);
        expect(status == PANGEA_ERR_INVALID_ARGUMENT, "open_write(\"\") must be PANGEA_ERR_INVALID_ARGUMENT");
    });
}

}  // namespace pangea::conformance

// core/recovery/state_transfer: live recovery's wire format. The joiner's side (fetch_state: the
// preamble, the section table, the checksummed chunks, resuming with another source) reads what
// a member sends; the member's side (StateServer::serve) reads the joiner's request. Both over
// a scripted transport (scripted_transport.hpp) that plays the input as the peer's bytes.
//
// Input: a first byte (bit 0: the member's side instead of the joiner's; bit 1: two sources),
// then the peer's bytes. The joiner asks for step >= 1, of at most 1 MiB.
// Properties: fetch_state returns a snapshot whose sections are the sizes its table said, or
// throws MeshError; serve never throws.
//
// fetch_state sleeps 100 ms after each failed source and gives up at a deadline: this target
// runs it on a clock of its own (clock_gettime(CLOCK_MONOTONIC) and nanosleep are replaced, for
// the fuzzing thread while it runs fetch_state only), where sleeping costs nothing. The run ends
// when the script is over (every source then fails) and the 2 s deadline passes.
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "fuzz_support.hpp"
#include "recovery/state_transfer.hpp"
#include "scripted_transport.hpp"

namespace {

thread_local bool fake_clock = false;
thread_local int64_t fake_now_ns = 0;

int64_t ns(const timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; }

}  // namespace

extern "C" int clock_gettime(clockid_t clock, timespec* out) {
    if (fake_clock && clock == CLOCK_MONOTONIC) {
        out->tv_sec = fake_now_ns / 1000000000;
        out->tv_nsec = fake_now_ns % 1000000000;
        return 0;
    }
    return static_cast<int>(::syscall(SYS_clock_gettime, clock, out));
}

extern "C" int nanosleep(const timespec* request, timespec* remaining) {
    if (fake_clock) {
        fake_now_ns += ns(*request);
        return 0;
    }
    return static_cast<int>(::syscall(SYS_nanosleep, request, remaining));
}

namespace {

using namespace pangea;

constexpr uint64_t kMaxBytes = 1 << 20;  // what the joiner accepts in all

std::shared_ptr<const StateSnapshot> published() {
    auto s = std::make_shared<StateSnapshot>();
    s->step = 3;
    s->sections.push_back({"params", std::vector<uint8_t>(100, 7), true});
    s->sections.push_back({"inner", std::vector<uint8_t>(10, 1), false});
    s->sections.push_back({"empty", {}, true});
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input input(data, size);
    const uint8_t mode = input.byte();
    const PluginInstance transport = fuzz::scripted_transport();
    fuzz::script_of(transport).play(input.rest());

    if (mode & 1) {  // the member's side
        StateServer server;
        server.publish(published());
        server.stop();  // a request for a newer snapshot is answered at once ("none yet")
        const auto& vt = transport.vtable<pangea_transport_vtable>();
        pangea_hello self{sizeof(pangea_hello), 0, 1, kRecoveryChannel}, peer{};
        pangea_connection* handle = nullptr;
        if (vt.connect(transport.handle(), "joiner:1", &self, 0, &peer, &handle) != PANGEA_OK) return 0;
        server.serve(transport, OwnedConnection(&transport, handle), peer);
        return 0;
    }

    std::vector<Member> sources{{1, "member-1:7000"}};
    if (mode & 2) sources.push_back({2, "member-2:7000"});
    FetchReport report;
    fake_clock = true;
    fake_now_ns = int64_t{1} << 40;
    try {
        const StateSnapshot snapshot = fetch_state(transport, sources, 0, 1, "", 1, std::chrono::seconds(2), kMaxBytes, &report);
        fake_clock = false;
        FUZZ_CHECK(snapshot.step >= 1, "a snapshot older than asked for was accepted");
    } catch (const MeshError&) {
    }
    fake_clock = false;
    return 0;
}

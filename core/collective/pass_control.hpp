// What both kinds of all-reduce pass share (collective/ring_allreduce.cpp, gather_pass.cpp): a
// sending and a receiving thread over a ring's two links, the receiver telling the sender how far
// it got, and one failure that stops both.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "collective/link.hpp"

namespace pangea {

// Thrown inside a pass; run() turns it into the result.
struct PassFailure {
    pangea_status status;
    std::string error;
};

class PassControl {
public:
    PassControl(const Link& next, const Link& previous, int stall_timeout_ms)
        : next_(next), previous_(previous), stall_timeout_ms_(stall_timeout_ms) {}

    // Runs `send` on the calling thread and `receive` on a second one; returns once both are done,
    // or throws the first failure (the other direction then fails too, with PANGEA_ERR_ABORTED,
    // which would hide the cause).
    template <class Send, class Receive>
    void run(Send&& send, Receive&& receive) {
        std::thread receiver([&] { guard(receive); });
        guard(send);
        receiver.join();
        if (first_failure_) throw *first_failure_;
    }

    // Records the failure (the first one wins), aborts both links, so that requests in flight on
    // either thread end at once and the neighbours learn of it, and throws.
    [[noreturn]] void raise(pangea_status status, std::string error) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!first_failure_) first_failure_ = PassFailure{status, error};
        }
        stop();
        throw PassFailure{status, std::move(error)};
    }

    // Waits for a send or receive; a stall or a failure raises.
    void complete(Request& request, const char* what) {
        const pangea_status status = request.wait(stall_timeout_ms_);
        if (status == PANGEA_OK) return;
        if (status == PANGEA_ERR_TIMEOUT)
            raise(PANGEA_ERR_PEER_LOST, std::string("all-reduce: no progress on a ") + what + " for " +
                                            std::to_string(stall_timeout_ms_) + " ms: the peer is stalled");
        raise(status, std::string("all-reduce: ") + what + " failed with " + status_name(status) + ": " + request.error());
    }

    // The receiver: items [0, count) of its sequence are done with.
    void consumed(size_t count) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            consumed_ = count;
        }
        progress_.notify_all();
    }
    // The sender: waits until item `index` of the receiver's sequence is done with; false when the
    // pass stopped meanwhile.
    bool wait_consumed(size_t index) {
        std::unique_lock<std::mutex> lock(mutex_);
        progress_.wait(lock, [&] { return stopped_ || consumed_ > index; });
        return !stopped_;
    }

private:
    // Runs one direction; its failure has been recorded by raise(), anything else is recorded here.
    template <class F>
    void guard(F& direction) {
        try {
            direction();
        } catch (const PassFailure&) {
        } catch (const std::exception& e) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!first_failure_) first_failure_ = PassFailure{PANGEA_ERR_INTERNAL, std::string("all-reduce: ") + e.what()};
        }
        bool failed;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            failed = first_failure_.has_value();
        }
        if (failed) stop();
    }

    void stop() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopped_ = true;
        }
        progress_.notify_all();
        next_.abort();
        previous_.abort();
    }

    const Link& next_;
    const Link& previous_;
    int stall_timeout_ms_;
    std::mutex mutex_;
    std::condition_variable progress_;
    size_t consumed_ = 0;
    bool stopped_ = false;
    std::optional<PassFailure> first_failure_;
};

}  // namespace pangea

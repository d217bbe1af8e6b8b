// A transport plugin that plays a script instead of a network (written with the SDK's Transport
// class): every receive takes the next bytes of the script; every send is kept (sent()) and
// otherwise dropped. Once the script runs out, receives fail with PANGEA_ERR_PEER_LOST and
// connects with PANGEA_ERR_IO. One instance, one thread at a time (the fuzz targets').
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "pangea/sdk.hpp"

namespace pangea::fuzz {

class ScriptedTransport final : public pangea::sdk::Transport {
public:
    static constexpr const char* name = "scripted";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description = "plays bytes from a script (fuzz targets)";
    static std::vector<pangea_setting> settings() { return {}; }

    explicit ScriptedTransport(const pangea::sdk::Host& /*host*/) {}

    // The bytes the peer "sends", from now on.
    void play(std::string script) {
        script_ = std::move(script);
        at_ = 0;
        sent_.clear();
    }
    const std::string& sent() const { return sent_; }
    bool over() const { return at_ >= script_.size(); }

    pangea_listener* listen(const char*, char*, size_t) override {
        throw pangea::sdk::Error(PANGEA_ERR_UNSUPPORTED, "scripted: no listening");
    }
    pangea_connection* accept(pangea_listener*, const pangea_hello&, int, pangea_hello*) override {
        throw pangea::sdk::Error(PANGEA_ERR_UNSUPPORTED, "scripted: no listening");
    }
    pangea_connection* connect(const char* address, const pangea_hello& self, int, pangea_hello* peer) override {
        if (over()) throw pangea::sdk::Error(PANGEA_ERR_IO, std::string("scripted: the script is over: ") + address);
        *peer = self;
        peer->node_id = self.node_id + 1;
        return reinterpret_cast<pangea_connection*>(new Connection{});
    }
    pangea_request* isend(pangea_connection* connection, const void* data, size_t bytes) override {
        if (as(connection)->aborted) return done(PANGEA_ERR_ABORTED);
        sent_.append(static_cast<const char*>(data), bytes);
        return done(PANGEA_OK);
    }
    pangea_request* irecv(pangea_connection* connection, void* data, size_t bytes) override {
        if (as(connection)->aborted) return done(PANGEA_ERR_ABORTED);
        if (script_.size() - at_ < bytes) {
            at_ = script_.size();
            return done(PANGEA_ERR_PEER_LOST);
        }
        if (bytes > 0) std::memcpy(data, script_.data() + at_, bytes);
        at_ += bytes;
        return done(PANGEA_OK);
    }
    pangea_status test(pangea_request* request) override { return finish(request); }
    pangea_status wait(pangea_request* request, int) override { return finish(request); }
    void abort(pangea_connection* connection) noexcept override { as(connection)->aborted = true; }
    void close(pangea_connection* connection) noexcept override { delete as(connection); }
    void close_listener(pangea_listener*) noexcept override {}

private:
    struct Connection {
        bool aborted = false;
    };
    struct Request {
        pangea_status status;
    };
    static Connection* as(pangea_connection* c) { return reinterpret_cast<Connection*>(c); }
    static pangea_request* done(pangea_status status) { return reinterpret_cast<pangea_request*>(new Request{status}); }
    pangea_status finish(pangea_request* request) {
        const std::unique_ptr<Request> r(reinterpret_cast<Request*>(request));
        if (r->status != PANGEA_OK) set_last_error(r->status == PANGEA_ERR_ABORTED ? "scripted: aborted" : "scripted: the script is over");
        return r->status;
    }

    std::string script_;
    size_t at_ = 0;
    std::string sent_;
};

inline PluginInstance scripted_transport() {
    return instance_of(*pangea::sdk::detail::describe<ScriptedTransport>());
}

// The ScriptedTransport behind an instance made by scripted_transport().
inline ScriptedTransport& script_of(const PluginInstance& instance) {
    return *static_cast<ScriptedTransport*>(static_cast<pangea::sdk::PluginBase*>(instance.handle()));
}

}  // namespace pangea::fuzz

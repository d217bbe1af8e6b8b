#include "collective/link.hpp"

namespace pangea {

pangea_status Request::wait(int timeout_ms) {
    if (handle_ == nullptr) return PANGEA_ERR_INVALID_ARGUMENT;
    const auto& vt = transport_->vtable<pangea_transport_vtable>();
    const pangea_status status = vt.wait(transport_->handle(), handle_, timeout_ms);
    if (status != PANGEA_ERR_TIMEOUT) handle_ = nullptr;
    return status;
}

Request Link::send(const void* data, size_t bytes, pangea_status* status) const {
    pangea_request* handle = nullptr;
    *status = vt().isend(transport_->handle(), connection_, data, bytes, &handle);
    return *status == PANGEA_OK ? Request(transport_, handle) : Request();
}

Request Link::receive(void* data, size_t bytes, pangea_status* status) const {
    pangea_request* handle = nullptr;
    *status = vt().irecv(transport_->handle(), connection_, data, bytes, &handle);
    return *status == PANGEA_OK ? Request(transport_, handle) : Request();
}

void Link::abort() const { vt().abort(transport_->handle(), connection_); }

}  // namespace pangea

// RAII owners for libevent handles, and the trampoline convention for callbacks.
//
// Declare the EventBase before the events, bufferevents and listeners that use it: members
// are destroyed in reverse order. Callbacks are small static functions that cast their void*
// argument back to the owning object; no exception may leave one (catch at the edge).
#pragma once

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <memory>

#include "libmail/unique_fd.h"

namespace mailwright {

using EventBase = std::unique_ptr<event_base, FreeWith<event_base_free>>;
using Event = std::unique_ptr<event, FreeWith<event_free>>;
using BufferEvent = std::unique_ptr<bufferevent, FreeWith<bufferevent_free>>;
using ConnListener = std::unique_ptr<evconnlistener, FreeWith<evconnlistener_free>>;
using EvBuffer = std::unique_ptr<evbuffer, FreeWith<evbuffer_free>>;

// An event base configured for servers: epoll, no locking (one thread).
EventBase make_event_base();

}  // namespace mailwright

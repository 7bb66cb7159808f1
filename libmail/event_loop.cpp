#include "libmail/event_loop.h"

#include <cstdio>
#include <cstdlib>

namespace mailwright {

EventBase make_event_base() {
  event_config* cfg = event_config_new();
  if (cfg == nullptr) {
    std::fputs("fatal: event_config_new failed\n", stderr);
    std::abort();
  }
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  EventBase base(event_base_new_with_config(cfg));
  event_config_free(cfg);
  if (!base) {
    std::fputs("fatal: event_base_new failed\n", stderr);
    std::abort();
  }
  return base;
}

}  // namespace mailwright

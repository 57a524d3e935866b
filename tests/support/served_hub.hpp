// A hub served on a free port of 127.0.0.1, in an actor system of its own,
// for the tests that drive livehub through real sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <doctest/doctest.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include "livehub/all.hpp"

namespace livehub::test {

/// Default settings on a free port of 127.0.0.1.
inline hub_config loopback_config() {
  hub_config cfg;
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  return cfg;
}

/// An actor system with `scheduler_threads` workers, a hub spawned with
/// `cfg` and a server for it. Tests may stop or destroy the server
/// themselves; the destructor stops what is left and ends the hub.
struct served_hub {
  explicit served_hub(const hub_config& cfg = loopback_config(),
                      size_t scheduler_threads = 2)
    : sys(with_threads(sys_cfg, scheduler_threads)), hub(spawn_hub(sys, cfg)) {
    auto started = server::start(sys, hub, cfg);
    if (!started) {
      caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
      FAIL("server::start failed: " << sys.render(started.error()));
    }
    srv = std::move(*started);
    port = srv->port();
  }

  served_hub(const served_hub&) = delete;
  served_hub& operator=(const served_hub&) = delete;

  ~served_hub() {
    srv.reset(); // ~server stops it
    caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
  }

  static caf::actor_system_config& with_threads(caf::actor_system_config& cfg,
                                                size_t n) {
    cfg.set("scheduler.max-threads", n);
    return cfg;
  }

  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  hub_actor hub;
  std::unique_ptr<server> srv;
  uint16_t port = 0;
};

} // namespace livehub::test

// run_server(): what every livehub server binary does in main().
#include "livehub/main.hpp"

#include <csignal>
#include <iostream>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>

#include "livehub/hub.hpp"
#include "livehub/server.hpp"

namespace livehub {

namespace {

struct server_config : caf::actor_system_config {
  server_config() {
    add_options(custom_options_);
  }
};

} // namespace

int run_server(int argc, char** argv, const char* name, config_adjuster adjust,
               system_setup setup) {
  // Signals go to one waiting thread, not to whichever thread runs: block
  // them before any thread starts (threads inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  server_config cfg;
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << name << ": " << to_string(err) << "\n";
    return 1;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  auto hub_cfg = read_config(cfg);
  if (!hub_cfg) {
    std::cerr << name << ": " << to_string(hub_cfg.error()) << "\n";
    return 1;
  }
  if (adjust)
    adjust(cfg, *hub_cfg);
  if (!caf::get_if<size_t>(&cfg, "scheduler.max-threads"))
    cfg.set("scheduler.max-threads", worker_threads(*hub_cfg));
  caf::actor_system sys{cfg};
  if (setup)
    setup(sys, *hub_cfg);
  auto hub = spawn_hub(sys, *hub_cfg);
  auto stop_actors = [&] {
    caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
    if (hub_cfg->authorizer)
      caf::anon_send_exit(hub_cfg->authorizer, caf::exit_reason::user_shutdown);
  };
  auto srv = server::start(sys, hub, *hub_cfg);
  if (!srv) {
    std::cerr << name << ": " << sys.render(srv.error()) << "\n";
    stop_actors();
    return 1;
  }
  std::cout << "listening on " << (*srv)->host() << ":" << (*srv)->port()
            << std::endl;
  std::thread waiter{[&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::cerr << name << ": signal " << sig << ", shutting down\n";
    (*srv)->stop();
  }};
  (*srv)->wait();
  // stop() may also have come from elsewhere; wake the waiter if needed.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  srv->reset();
  stop_actors();
  return 0;
}

} // namespace livehub

// livehub-bench-server: livehub embedded for the benchmark (bench/run). The
// library's defaults, except where load needs more room:
//   livehub.send-queue-limit  4096  (a subscriber that keeps up with a closed
//                                    loop of up to 4096 outstanding
//                                    publications never trips it)
//   livehub.max-connections   20000 (the machine's open-file limit)
//   scheduler.max-threads     cores - io-threads (livehub::worker_threads)
// Each can be overridden on the command line or in caf-application.ini like
// every other livehub.* option.
//
// Run:  livehub-bench-server --livehub.port=0   (first line of stdout:
// "listening on HOST:PORT"). SIGINT/SIGTERM: close every connection with
// 1001, exit 0.
#include <csignal>
#include <iostream>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>

#include "livehub/all.hpp"

namespace {

struct bench_config : caf::actor_system_config {
  bench_config() {
    livehub::add_options(custom_options_);
  }
};

} // namespace

int main(int argc, char** argv) {
  // Signals go to one waiting thread: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  bench_config cfg;
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << "livehub-bench-server: " << to_string(err) << "\n";
    return 1;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  auto hub_cfg = livehub::read_config(cfg);
  if (!hub_cfg) {
    std::cerr << "livehub-bench-server: " << to_string(hub_cfg.error()) << "\n";
    return 1;
  }
  if (!caf::get_if<size_t>(&cfg, "scheduler.max-threads"))
    cfg.set("scheduler.max-threads", livehub::worker_threads(*hub_cfg));
  if (!caf::get_if<size_t>(&cfg, "livehub.send-queue-limit"))
    hub_cfg->send_queue_limit = 4096;
  if (!caf::get_if<size_t>(&cfg, "livehub.max-connections"))
    hub_cfg->max_connections = 20000;
  caf::actor_system sys{cfg};
  auto hub = livehub::spawn_hub(sys, *hub_cfg);
  auto srv = livehub::server::start(sys, hub, *hub_cfg);
  if (!srv) {
    std::cerr << "livehub-bench-server: " << sys.render(srv.error()) << "\n";
    caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
    return 1;
  }
  std::cout << "listening on " << (*srv)->host() << ":" << (*srv)->port()
            << std::endl;
  std::thread waiter{[&] {
    int sig = 0;
    sigwait(&signals, &sig);
    (*srv)->stop();
  }};
  (*srv)->wait();
  // stop() may also come from elsewhere; wake the waiter if needed.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  srv->reset();
  caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
  return 0;
}

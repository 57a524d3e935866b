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
#include <caf/actor_system_config.hpp>

#include "livehub/all.hpp"

int main(int argc, char** argv) {
  return livehub::run_server(
    argc, argv, "livehub-bench-server",
    [](const caf::actor_system_config& cfg, livehub::hub_config& hub) {
      if (!caf::get_if<size_t>(&cfg, "livehub.send-queue-limit"))
        hub.send_queue_limit = 4096;
      if (!caf::get_if<size_t>(&cfg, "livehub.max-connections"))
        hub.max_connections = 20000;
    });
}

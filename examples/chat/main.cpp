// livehub-chat: the chat demo's server. Browsers load the page from the web
// root, connect to /ws, join rooms (channels "room:<name>", on which clients
// may publish) and receive what others say; everything else is
// server-publish only (POST /api/publish or a trusted publisher connection).
// Room messages are checked (room_policy.hpp): {"name":N,"text":T}.
//
// Run:  ./build/examples/livehub-chat            (http://127.0.0.1:8080)
//       ./build/examples/livehub-chat --livehub.port=0   (prints the port)
// Every livehub.* option applies (see docs/configuration.md), also from
// caf-application.ini. SIGINT/SIGTERM close every connection with 1001 and
// exit 0.
#include <csignal>
#include <iostream>
#include <thread>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>

#include "livehub/all.hpp"
#include "room_policy.hpp"

namespace {

struct chat_config : caf::actor_system_config {
  chat_config() {
    livehub::add_options(custom_options_);
  }
};

} // namespace

int main(int argc, char** argv) {
  // Signals go to one waiting thread, not to whichever thread runs: block
  // them before any thread starts (threads inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  chat_config cfg;
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << "livehub-chat: " << to_string(err) << "\n";
    return 1;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  auto hub_cfg = livehub::read_config(cfg);
  if (!hub_cfg) {
    std::cerr << "livehub-chat: " << to_string(hub_cfg.error()) << "\n";
    return 1;
  }
  if (!caf::get_if<size_t>(&cfg, "scheduler.max-threads"))
    cfg.set("scheduler.max-threads", livehub::worker_threads(*hub_cfg));
  // The demo's defaults: rooms open to clients, the bundled page.
  if (!caf::get_if<std::vector<std::string>>(&cfg, "livehub.client-publish"))
    hub_cfg->client_publish = {"room:*"};
  // What browsers publish to rooms must be a chat message; say why not.
  hub_cfg->client_publish_check = chat::check_room_message;
  if (hub_cfg->web_root.empty())
    hub_cfg->web_root = LIVEHUB_CHAT_WEB_ROOT;
  if (access((hub_cfg->web_root + "/index.html").c_str(), R_OK) != 0)
    std::cerr << "livehub-chat: no page in " << hub_cfg->web_root
              << " (build it with: npm ci && npm run build:chat)\n";
  caf::actor_system sys{cfg};
  auto hub = livehub::spawn_hub(sys, *hub_cfg);
  auto srv = livehub::server::start(sys, hub, *hub_cfg);
  if (!srv) {
    std::cerr << "livehub-chat: " << sys.render(srv.error()) << "\n";
    caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
    return 1;
  }
  std::cout << "listening on " << (*srv)->host() << ":" << (*srv)->port()
            << std::endl;
  std::thread waiter{[&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::cerr << "livehub-chat: signal " << sig << ", shutting down\n";
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

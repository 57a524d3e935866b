// livehub-chat: the chat demo's server. Browsers load the page from the web
// root, connect to /ws, join rooms (channels "room:<name>", on which clients
// may publish) and receive what others say; everything else is
// server-publish only (POST /api/publish or a trusted publisher connection).
// Room messages are checked (room_policy.hpp): {"name":N,"text":T}.
//
// Two modes, which the page learns from GET /api/chat (login.hpp):
// - open (default): no tokens, anyone picks any name, as in livehub 1;
// - login (with --livehub.token-hmac-secret): POST /api/login hands out a
//   token for a name, with no password (a demo of the token flow, NOT an
//   authentication system; see login.hpp); every connection needs one; a
//   message's name must be its sender's user name; and private rooms
//   "dm:<a>+<b>" are open to their two users only (dm_authorizer.hpp).
//
// Run:  scripts/run-demo   (builds the page and this server;
// http://127.0.0.1:8080)
//       ./build/release/examples/livehub-chat
//       ./build/release/examples/livehub-chat --livehub.port=0 (prints the
//       port)
//       ./build/release/examples/livehub-chat --livehub.token-hmac-secret=S
//       (login mode; e.g. S=$(openssl rand -hex 32))
// Every livehub.* option applies (see docs/configuration.md), also from
// caf-application.ini. SIGINT/SIGTERM close every connection with 1001 and
// exit 0.
//
// Its main() does what livehub::run_server does (main.hpp), plus one step:
// the authorizer is an actor, so it can only be spawned once the actor system
// exists, after the point where run_server lets a program adjust hub_config.
#include <csignal>
#include <iostream>
#include <thread>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>

#include "dm_authorizer.hpp"
#include "livehub/all.hpp"
#include "login.hpp"
#include "room_policy.hpp"

namespace {

struct chat_config : caf::actor_system_config {
  chat_config() {
    livehub::add_options(custom_options_);
  }
};

/// The demo's defaults and rules, on top of the options given.
void adjust(const caf::actor_system_config& cfg, livehub::hub_config& hub) {
  // Rooms open to clients (with tokens, the token's claims open them too).
  if (!caf::get_if<std::vector<std::string>>(&cfg, "livehub.client-publish"))
    hub.client_publish = {"room:*"};
  // What browsers publish to rooms must be a chat message, under the
  // sender's own name where it has one; say why not.
  hub.client_publish_check = [](const livehub::publication& x,
                                const livehub::identity& who) {
    return chat::check_room_message(x, who);
  };
  // GET /api/chat, and POST /api/login in login mode.
  hub.http_handler
    = [secret = hub.token_hmac_secret](const livehub::http_request& req) {
        return chat::answer_chat_api(req, secret);
      };
  if (hub.web_root.empty())
    hub.web_root = LIVEHUB_CHAT_WEB_ROOT;
  if (access((hub.web_root + "/index.html").c_str(), R_OK) != 0)
    std::cerr << "livehub-chat: no page in " << hub.web_root
              << " (build it with: npm ci && npm run build:chat)\n";
  if (hub.token_hmac_secret.empty() && !hub.token_public_key.empty())
    std::cerr << "livehub-chat: the page logs in only with "
                 "--livehub.token-hmac-secret (it signs HS256 tokens)\n";
}

} // namespace

int main(int argc, char** argv) {
  // Signals go to one waiting thread: block them before any thread starts.
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
  adjust(cfg, *hub_cfg);
  if (!caf::get_if<size_t>(&cfg, "scheduler.max-threads"))
    cfg.set("scheduler.max-threads", livehub::worker_threads(*hub_cfg));
  caf::actor_system sys{cfg};
  // Private rooms: with tokens, livehub asks this actor about the channels
  // that the token's claims do not open (dm:<a>+<b>).
  if (hub_cfg->tokens_enabled())
    hub_cfg->authorizer = sys.spawn(chat::dm_authorizer);
  auto hub = livehub::spawn_hub(sys, *hub_cfg);
  auto stop_actors = [&] {
    caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
    if (hub_cfg->authorizer)
      caf::anon_send_exit(hub_cfg->authorizer, caf::exit_reason::user_shutdown);
  };
  auto srv = livehub::server::start(sys, hub, *hub_cfg);
  if (!srv) {
    std::cerr << "livehub-chat: " << sys.render(srv.error()) << "\n";
    stop_actors();
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
  // stop() may also have come from elsewhere; wake the waiter if needed.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  srv->reset();
  stop_actors();
  return 0;
}

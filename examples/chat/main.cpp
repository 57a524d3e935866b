// livehub-chat: the chat demo's server. Browsers load the page from the web
// root, connect to /ws, join rooms (channels "room:<name>", on which clients
// may publish) and receive what others say; everything else is
// server-publish only (POST /api/publish or a trusted publisher connection).
// Room messages are checked (room_policy.hpp): {"name":N,"text":T}. Rooms
// are history channels (a page that reconnects recovers what it missed) and
// presence channels (who is in the room), unless
// --livehub.history-channels / --livehub.presence-channels say otherwise.
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
#include <iostream>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "dm_authorizer.hpp"
#include "livehub/all.hpp"
#include "login.hpp"
#include "room_policy.hpp"

namespace {

/// The demo's defaults and rules, on top of the options given.
void adjust(const caf::actor_system_config& cfg, livehub::hub_config& hub) {
  // Rooms open to clients (with tokens, the token's claims open them too).
  if (!caf::get_if<std::vector<std::string>>(&cfg, "livehub.client-publish"))
    hub.client_publish = {"room:*"};
  // Rooms keep their recent messages, so that a page that lost its
  // connection for a moment gets what it missed (subscribe with since), and
  // know who is in them (presence, with the name each page connected with).
  if (!caf::get_if<std::vector<std::string>>(&cfg, "livehub.history-channels"))
    hub.history_channels = {"room:*", "dm:*"};
  if (!caf::get_if<std::vector<std::string>>(&cfg, "livehub.presence-channels"))
    hub.presence_channels = {"room:*", "dm:*"};
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
  return livehub::run_server(
    argc, argv, "livehub-chat", adjust,
    [](caf::actor_system& sys, livehub::hub_config& hub) {
      // Private rooms: with tokens, livehub asks this actor about the
      // channels that the token's claims do not open (dm:<a>+<b>).
      if (hub.tokens_enabled())
        hub.authorizer = sys.spawn(chat::dm_authorizer, std::string{"dm:"});
    });
}

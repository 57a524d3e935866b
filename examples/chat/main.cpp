// livehub-chat: the chat demo's server. Browsers load the page from the web
// root, connect to /ws, join rooms (channels "room:<name>", on which clients
// may publish) and receive what others say; everything else is
// server-publish only (POST /api/publish or a trusted publisher connection).
// Room messages are checked (room_policy.hpp): {"name":N,"text":T}.
//
// Run:  scripts/run-demo   (builds the page and this server;
// http://127.0.0.1:8080)
//       ./build/release/examples/livehub-chat
//       ./build/release/examples/livehub-chat --livehub.port=0 (prints the
//       port)
// Every livehub.* option applies (see docs/configuration.md), also from
// caf-application.ini. SIGINT/SIGTERM close every connection with 1001 and
// exit 0.
#include <iostream>
#include <unistd.h>

#include <caf/actor_system_config.hpp>

#include "livehub/all.hpp"
#include "room_policy.hpp"

int main(int argc, char** argv) {
  return livehub::run_server(
    argc, argv, "livehub-chat",
    [](const caf::actor_system_config& cfg, livehub::hub_config& hub) {
      // The demo's defaults: rooms open to clients, the bundled page.
      if (!caf::get_if<std::vector<std::string>>(&cfg,
                                                 "livehub.client-publish"))
        hub.client_publish = {"room:*"};
      // What browsers publish to rooms must be a chat message; say why not.
      hub.client_publish_check = [](const livehub::publication& x,
                                    const livehub::identity&) {
        return chat::check_room_message(x);
      };
      if (hub.web_root.empty())
        hub.web_root = LIVEHUB_CHAT_WEB_ROOT;
      if (access((hub.web_root + "/index.html").c_str(), R_OK) != 0)
        std::cerr << "livehub-chat: no page in " << hub.web_root
                  << " (build it with: npm ci && npm run build:chat)\n";
    });
}

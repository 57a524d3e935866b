// livehub inside an application's actor system, in two parts.
//
// 1. A message bus without sockets: a "ticker" actor publishes prices with
//    tags, an "auditor" actor receives all of them and a "big-moves" actor
//    only those whose tag `move` is at least 2 (a tag filter), as typed
//    messages, exactly as browsers would receive them as frames. Shows
//    spawn_hub, livehub::publish, publication tags, tag_filter and the hub's
//    subscribe/unsubscribe/stats messages.
// 2. The same hub served on 127.0.0.1 (a free port) with an observer actor
//    that prints connection events; a WebSocket client made here (what a
//    browser would be) connects, subscribes with a filter, receives a
//    publication and closes, and one from a foreign origin is refused.
//    Shows hub_config::observer and its events.
//
// Run:  ./build/release/examples/livehub-embedded   (after scripts/run-tests;
//       or: cmake -S . -B build && cmake --build build --target
//       livehub-embedded)
// (it prints what both parts receive, then the hub's stats, and exits)
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

#include "livehub/all.hpp"

using namespace std::chrono_literals;

namespace {

using tick_atom = caf::tick_atom;

/// Prints `xs` as one whole line. The actors here run on several threads at
/// once: lines written piece by piece to std::cout would interleave.
template<class... Ts>
void say(const Ts&... xs) {
  std::ostringstream line;
  (line << ... << xs);
  static std::mutex mtx;
  std::lock_guard<std::mutex> guard{mtx};
  std::cout << line.str() << std::endl;
}

/// Receives the publications of the channels it subscribes to.
livehub::subscriber_actor::behavior_type
auditor(livehub::subscriber_actor::pointer, std::string name) {
  return {
    [name](const livehub::publication& x) {
      say(name, " got ", x.channel, " / ", x.type, ": ", x.data.str());
    },
  };
}

/// Publishes one price per tick, five times, tagged with how far it moved.
caf::behavior ticker(caf::event_based_actor* self, livehub::hub_actor hub) {
  self->send(self, tick_atom::value, 1);
  return {
    [=](tick_atom, int n) {
      auto move = n % 3; // 1, 2, 0, 1, 2
      auto data = livehub::json_text::parse(
        R"({"symbol":"CAF","price":)" + std::to_string(100 + n)
        + R"(.25,"seq":)" + std::to_string(n) + "}");
      livehub::publication p{"prices", "tick", std::move(*data)};
      p.tags = {{"symbol", "CAF"}, {"move", std::to_string(move)}};
      // Validated here, where it enters; browsers would get the same frame.
      if (auto err = validate(p))
        std::cerr << "bad publication: " << to_string(err) << std::endl;
      else
        self->send(hub, caf::publish_atom::value, std::move(p));
      if (n < 5)
        self->delayed_send(self, 50ms, tick_atom::value, n + 1);
      else
        self->quit();
    },
  };
}

/// Counts down the connection ends (disconnects and refusals) that `main`
/// waits for the observer to report before it stops.
struct awaited_ends {
  int left;
  std::promise<void> reported;
};

/// Prints what the server tells about its connections, each line starting
/// with `tag`, and counts the ends in `ends`.
livehub::observer_actor::behavior_type
watcher(livehub::observer_actor::pointer, std::string tag,
        std::shared_ptr<awaited_ends> ends) {
  auto ended = [ends] {
    if (--ends->left == 0)
      ends->reported.set_value();
  };
  return {
    [tag](const livehub::connected_event& x) {
      say(tag, ": connected ", x.client, " from ", x.peer);
    },
    [tag, ended](const livehub::disconnected_event& x) {
      say(tag, ": disconnected ", x.client, " (", x.code,
          x.reason.empty() ? "" : " " + x.reason, ")");
      ended();
    },
    [tag](const livehub::subscribed_event& x) {
      say(tag, ": ", x.client, " subscribed to ", x.channel);
    },
    [tag](const livehub::unsubscribed_event& x) {
      say(tag, ": ", x.client, " unsubscribed from ", x.channel);
    },
    [tag, ended](const livehub::refused_event& x) {
      say(tag, ": refused a connection from ", x.peer, " (", x.reason, ")");
      ended();
    },
  };
}

/// Sends `xs` to the hub and waits for its ok, printing `what` (or why not).
template<class... Ts>
void ask(caf::scoped_actor& self, const livehub::hub_actor& hub,
         const std::string& what, Ts&&... xs) {
  self->request(hub, 5s, std::forward<Ts>(xs)...)
    .receive(
      [&](caf::ok_atom) {
        say(what);
      },
      [&](caf::error& err) {
        std::cerr << what << ": failed: " << self->system().render(err)
                  << std::endl;
      });
}

using ws_client = websocketpp::client<websocketpp::config::asio_client>;

/// What a browser does: connects to `url` (with `origin`, if any), sends
/// `subscribe`, and once subscribed asks `publish` to run; prints the first
/// publication it receives, then closes. Returns the upgrade's HTTP status.
int browse(const std::string& url, const std::string& origin,
           const std::string& subscribe, const std::function<void()>& publish) {
  ws_client c;
  c.clear_access_channels(websocketpp::log::alevel::all);
  c.clear_error_channels(websocketpp::log::elevel::all);
  c.init_asio();
  int status = 0;
  c.set_open_handler([&](websocketpp::connection_hdl h) {
    c.send(h, subscribe, websocketpp::frame::opcode::text);
  });
  c.set_message_handler(
    [&](websocketpp::connection_hdl h, ws_client::message_ptr msg) {
      auto& text = msg->get_payload();
      if (text.find(R"("type":"ok")") != std::string::npos) {
        publish(); // subscribed: publish now
        return;
      }
      say("browser got ", text);
      c.close(h, websocketpp::close::status::normal, "bye");
    });
  c.set_close_handler([&](websocketpp::connection_hdl h) {
    status = c.get_con_from_hdl(h)->get_response_code();
  });
  c.set_fail_handler([&](websocketpp::connection_hdl h) {
    auto failed = c.get_con_from_hdl(h);
    status = failed->get_response_code();
  });
  // Handlers are copied into each connection when it is made: set them first.
  websocketpp::lib::error_code ec;
  auto con = c.get_connection(url, ec);
  if (ec)
    return 0;
  if (!origin.empty())
    con->replace_header("Origin", origin);
  c.connect(con);
  c.run();
  return status;
}

} // namespace

int main(int argc, char** argv) {
  caf::actor_system_config cfg;
  if (auto err = cfg.parse(argc, argv); err || cfg.cli_helptext_printed)
    return err ? 1 : 0;
  caf::actor_system sys{cfg};
  livehub::hub_config hub_cfg;
  hub_cfg.host = "127.0.0.1";
  hub_cfg.port = 0;
  // Part 2 makes one connection that closes and one that is refused.
  auto ends = std::make_shared<awaited_ends>();
  ends->left = 2;
  auto ends_reported = ends->reported.get_future();
  hub_cfg.observer = sys.spawn(watcher, std::string{"observer"}, ends);
  auto hub = livehub::spawn_hub(sys, hub_cfg);
  auto audit = sys.spawn(auditor, std::string{"auditor"});
  auto big = sys.spawn(auditor, std::string{"big-moves"});
  caf::scoped_actor self{sys};
  // -- 1. the bus ------------------------------------------------------------
  // The reply says the channel delivers to the subscriber from now on.
  ask(self, hub, "auditor subscribed", caf::subscribe_atom::value,
      std::string{"prices"}, audit);
  auto filter
    = livehub::tag_filter::parse(R"({"key":"move","op":"gte","value":2})");
  ask(self, hub, "big-moves subscribed with a filter",
      caf::subscribe_atom::value, std::string{"prices"}, big, *filter);
  // Invalid input gets a clear error and is never sent.
  if (auto err = livehub::publish(hub, "prices", "tick", "{oops"))
    say("rejected: ", sys.render(err));
  auto tick = sys.spawn(ticker, hub);
  self->wait_for(tick);
  ask(self, hub, "auditor unsubscribed", caf::unsubscribe_atom::value,
      std::string{"prices"}, audit.address());
  // -- 2. served, observed ---------------------------------------------------
  auto srv = livehub::server::start(sys, hub, hub_cfg);
  if (!srv) {
    std::cerr << "server failed: " << sys.render(srv.error()) << std::endl;
    return 1;
  }
  auto url = "ws://127.0.0.1:" + std::to_string((*srv)->port()) + "/ws";
  say("serving ", url);
  auto publish_alert = [&] {
    livehub::publication p{"alerts", "alert",
                           *livehub::json_text::parse(R"("disk 91%")")};
    p.tags = {{"level", "warn"}};
    self->send(hub, caf::publish_atom::value, p);
  };
  browse(url, "",
         R"({"type":"subscribe","channel":"alerts","id":1,)"
         R"("filter":{"key":"level","op":"in","values":["warn","error"]}})",
         publish_alert);
  auto status = browse(url, "https://elsewhere.example",
                       R"({"type":"subscribe","channel":"alerts"})", [] {});
  say("a foreign origin's upgrade got HTTP ", status);
  // The observer prints asynchronously: wait until it has reported both ends.
  if (ends_reported.wait_for(5s) != std::future_status::ready)
    std::cerr << "the observer did not report both connection ends\n";
  (*srv)->stop();
  self->request(hub, 5s, livehub::stats_atom::value)
    .receive(
      [](const livehub::hub_stats& st) {
        say("stats: published=", st.published, " delivered=", st.delivered);
      },
      [](caf::error&) {});
  caf::anon_send_exit(audit, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(big, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(hub_cfg.observer, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
}

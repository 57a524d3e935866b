// livehub as an application's message bus, without any socket: a "ticker"
// actor publishes prices to the hub, an "auditor" actor subscribes to the
// channel and receives them as typed messages, exactly as browsers would
// receive them as frames. Shows spawn_hub, livehub::publish, and the hub's
// subscribe/unsubscribe/stats messages.
//
// Run:  ./build/release/examples/livehub-embedded   (after scripts/run-tests;
//       or: cmake -S . -B build && cmake --build build --target
//       livehub-embedded)
// (it prints the publications it receives, then the hub's stats, and exits)
#include <iostream>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "livehub/all.hpp"

using namespace std::chrono_literals;

namespace {

using tick_atom = caf::tick_atom;

/// Receives the publications of the channels it subscribes to.
livehub::subscriber_actor::behavior_type
auditor(livehub::subscriber_actor::pointer, std::string name) {
  return {
    [name](const livehub::publication& x) {
      std::cout << name << " got " << x.channel << " / " << x.type << ": "
                << x.data.str() << std::endl;
    },
  };
}

/// Publishes one price per tick, five times.
caf::behavior ticker(caf::event_based_actor* self, livehub::hub_actor hub) {
  self->send(self, tick_atom::value, 1);
  return {
    [=](tick_atom, int n) {
      auto data = R"({"symbol":"CAF","price":)" + std::to_string(100 + n)
        + R"(.25,"seq":)" + std::to_string(n) + "}";
      // Validated here, where it enters; browsers would get the same frame.
      if (auto err = livehub::publish(hub, "prices", "tick", data))
        std::cerr << "publish failed: " << to_string(err) << std::endl;
      if (n < 5)
        self->delayed_send(self, 50ms, tick_atom::value, n + 1);
      else
        self->quit();
    },
  };
}

} // namespace

int main(int argc, char** argv) {
  caf::actor_system_config cfg;
  if (auto err = cfg.parse(argc, argv); err || cfg.cli_helptext_printed)
    return err ? 1 : 0;
  caf::actor_system sys{cfg};
  auto hub = livehub::spawn_hub(sys, livehub::hub_config{});
  auto audit = sys.spawn(auditor, std::string{"auditor"});
  {
    caf::scoped_actor self{sys};
    // The reply says the channel delivers to the auditor from now on.
    self
      ->request(hub, 5s, caf::subscribe_atom::value, std::string{"prices"},
                audit)
      .receive(
        [](caf::ok_atom) {
          std::cout << "auditor subscribed\n";
        },
        [&](caf::error& err) {
          std::cerr << "subscribe failed: " << sys.render(err) << "\n";
        });
    // Invalid input gets a clear error and is never sent.
    if (auto err = livehub::publish(hub, "prices", "tick", "{oops"))
      std::cout << "rejected: " << sys.render(err) << "\n";
    auto tick = sys.spawn(ticker, hub);
    self->wait_for(tick);
    self
      ->request(hub, 5s, caf::unsubscribe_atom::value, std::string{"prices"},
                audit.address())
      .receive(
        [](caf::ok_atom) {
          std::cout << "auditor unsubscribed\n";
        },
        [](caf::error&) {});
    self->request(hub, 5s, livehub::stats_atom::value)
      .receive(
        [](const livehub::hub_stats& st) {
          std::cout << "stats: published=" << st.published
                    << " delivered=" << st.delivered
                    << " channels=" << st.channels << "\n";
        },
        [](caf::error&) {});
  }
  caf::anon_send_exit(audit, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
}

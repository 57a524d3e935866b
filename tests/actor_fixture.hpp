// A deterministic actor system for livehub's actor tests: CAF's test
// coordinator runs every actor on the test's thread, and fake sinks stand in
// for WebSocket connections.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/channel.hpp"
#include "actors/client.hpp"
#include "actors/counters.hpp"
#include "actors/hub.hpp"
#include "actors/keepalive.hpp"
#include "actors/sink.hpp"
#include "livehub/all.hpp"

namespace livehub::test {

/// A connection that records what the server sends. `reading = false`
/// simulates a peer that stops reading: frames stay queued.
class fake_sink : public sink {
 public:
  explicit fake_sink(const hub_config& cfg)
    : sink(cfg.send_queue_limit, cfg.send_queue_bytes) {
    // nop
  }

  std::vector<std::string> frames;
  std::optional<uint16_t> close_code;
  std::string close_reason;
  size_t pings = 0;
  size_t consumed_count = 0;
  bool reading = true;
  /// Bytes the fake connection holds unwritten (tests set it to 0 to drain).
  size_t buffered = 0;
  size_t handed = 0;

  /// Frames received since the last call.
  std::vector<std::string> take() {
    auto result = std::move(frames);
    frames.clear();
    return result;
  }

 protected:
  bool do_send(const frame_ptr& frame, time_point) override {
    frames.push_back(*frame);
    handed += frame->size();
    if (!reading)
      buffered += frame->size();
    return true;
  }
  uint64_t do_written() override {
    return handed - buffered;
  }
  void do_close(uint16_t code, const std::string& reason) override {
    close_code = code;
    close_reason = reason;
  }
  void do_ping() override {
    ++pings;
  }
  void do_consumed() override {
    ++consumed_count;
  }
};

inline caf::actor_system_config& test_config() {
  static caf::actor_system_config cfg = [] {
    caf::actor_system_config x;
    x.set("scheduler.policy", caf::atom("testing"));
    x.set("logger.verbosity", caf::atom("quiet"));
    return x;
  }();
  return cfg;
}

/// One connection of the fixture: its client actor and fake sink.
struct fake_connection {
  client_actor client;
  std::shared_ptr<fake_sink> out;
};

/// Publications an application actor received (see collector).
using received_list = std::shared_ptr<std::vector<publication>>;

/// An application actor that records the publications it receives.
inline subscriber_actor::behavior_type collector(subscriber_actor::pointer,
                                                 received_list received) {
  return {
    [received](const publication& x) {
      received->push_back(x);
    },
  };
}

struct actor_fixture {
  caf::actor_system sys{test_config()};
  caf::scheduler::test_coordinator& sched
    = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  caf::scoped_actor self{sys};
  hub_config cfg;
  hub_actor hub = spawn_hub(sys, cfg);
  /// The hub's counters, routes and config, as a server gets them.
  hub_shared shared = fetch_shared();
  hub_counters_ptr counters = shared.counters;
  route_table_ptr routes = shared.routes;
  /// Spawned on first use, with the cfg of that moment.
  keepalive_actor watcher;

  ~actor_fixture() {
    self->send_exit(hub, caf::exit_reason::user_shutdown);
    if (watcher)
      self->send_exit(watcher, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// Replaces the hub with one spawned with the current `cfg` (for the
  /// settings the hub reads itself, such as history and presence channels).
  void respawn_hub() {
    self->send_exit(hub, caf::exit_reason::user_shutdown);
    run();
    hub = spawn_hub(sys, cfg);
    shared = fetch_shared();
    counters = shared.counters;
    routes = shared.routes;
  }

  /// Advances the test clock by `total` in sweep periods, running every
  /// actor after each step.
  void advance(caf::timespan total) {
    auto step = sweep_period(cfg);
    for (caf::timespan t{0}; t < total; t += step) {
      sched.advance_time(step);
      run();
    }
  }

  /// Runs every pending message (timers only fire on advance_time).
  void run() {
    sched.run();
  }

  hub_shared fetch_shared() {
    self->send(internal(hub), caf::get_atom::value);
    sched.run();
    hub_shared result;
    self->receive([&](hub_shared& x) {
      result = std::move(x);
    });
    return result;
  }

  /// Opens a connection as the transport does: spawn its client actor and
  /// register it with the hub.
  fake_connection connect(bool trusted = false) {
    auto out = std::make_shared<fake_sink>(cfg);
    // Client actors apply their hub's policy. Tests change `cfg` after the
    // fixture spawned its hub, so each connection gets the cfg of that
    // moment, as if the hub had been spawned with it.
    auto with_cfg = shared;
    with_cfg.cfg = std::make_shared<const hub_config>(cfg);
    with_cfg.policy = make_client_policy(cfg);
    auto client = sys.spawn(livehub::client, internal(hub),
                            std::shared_ptr<sink>{out}, std::move(with_cfg),
                            client_rights{trusted, {}});
    if (!watcher)
      watcher = sys.spawn(keepalive, std::make_shared<const hub_config>(cfg),
                          counters);
    connection_ref ref{caf::actor_cast<caf::strong_actor_ptr>(client), out, {}};
    self->send(internal(hub), caf::join_atom::value, ref);
    self->send(watcher, caf::join_atom::value, ref);
    run();
    return {client, out};
  }

  /// Delivers one text frame from the connection's peer and runs.
  void say(const fake_connection& conn, std::string text) {
    self->send(conn.client, text_atom::value, std::move(text));
    run();
  }

  /// The connection closes, as the transport reports it.
  void disconnect(const fake_connection& conn) {
    self->send(conn.client, closed_atom::value);
    run();
  }

  /// Sends `xs` to the hub, as an application does (a subscribe, say),
  /// runs, and requires the hub's `ok`.
  template<class... Ts>
  void expect_ok(Ts&&... xs) {
    self->send(hub, std::forward<Ts>(xs)...);
    run();
    bool ok = false;
    self->receive(
      [&](caf::ok_atom) {
        ok = true;
      },
      [](caf::error&) {});
    REQUIRE(ok);
  }

  /// Publishes through the hub, as an application does.
  void publish(std::string channel, std::string type, std::string data) {
    auto err = livehub::publish(hub, std::move(channel), std::move(type), data);
    REQUIRE(!err);
    run();
  }

  hub_stats stats() {
    self->send(hub, stats_atom::value);
    run();
    hub_stats result;
    self->receive([&](hub_stats& x) {
      result = x;
    });
    return result;
  }

  hub_state& hub_internals() {
    auto ptr = caf::actor_cast<caf::abstract_actor*>(hub);
    return dynamic_cast<
             caf::stateful_actor<hub_state, hub_internal_actor::base>&>(*ptr)
      .state;
  }
};

} // namespace livehub::test

// client: one actor per connection. Parses its commands in order, keeps its
// subscriptions, runs the keepalive and write-progress timers, and quits when
// the connection closes (monitors then clean up channels and hub).
#pragma once

#include <memory>
#include <string>
#include <unordered_set>

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/sink.hpp"
#include "livehub/hub.hpp"
#include "transport/codec.hpp"

namespace livehub {

/// What the transport tells a client actor about its connection.
using client_actor = caf::typed_actor<
  /// A text message arrived.
  caf::reacts_to<text_atom, std::string>,
  /// A pong arrived.
  caf::reacts_to<pong_atom>,
  /// The connection ended.
  caf::reacts_to<closed_atom>,
  // -- the actor's own timers --------------------------------------------
  caf::reacts_to<ping_atom>, caf::reacts_to<deadline_atom, uint64_t>,
  caf::reacts_to<write_atom>>;

/// What a connection may do, decided at the upgrade.
struct client_rights {
  /// A trusted publisher may publish to any channel, "*" included.
  bool trusted = false;
};

struct client_state {
  hub_actor hub;
  std::shared_ptr<sink> out;
  /// Shared by every client of a server.
  std::shared_ptr<const hub_config> cfg;
  hub_counters_ptr counters;
  client_rights rights;
  std::unordered_set<std::string> subscriptions;

  /// Pings sent, and the count of pings sent when the last pong arrived.
  uint64_t pings_sent = 0;
  uint64_t pings_answered = 0;

  /// Bytes written at the last check, and when they last moved while
  /// frames were queued.
  uint64_t last_sent = 0;
  caf::actor_clock::time_point stalled_since;
  bool stalled = false;

  /// Sends a reply frame, counting a slow consumer if it is refused so.
  void reply(const frame_ptr& frame);

  /// Sends an error frame (and counts it).
  void fail(codec::error_code code, std::string_view message,
            std::string_view id);

  static const char* name;
};

/// Spawned by the transport for each opened connection.
client_actor::behavior_type
client(client_actor::stateful_pointer<client_state> self, hub_actor hub,
       std::shared_ptr<sink> out, std::shared_ptr<const hub_config> cfg,
       hub_counters_ptr counters, client_rights rights);

} // namespace livehub

// client: one actor per connection. Parses its commands in order, keeps its
// subscriptions, enforces their limits, and quits when the connection closes
// (monitors then clean up channels, hub and keepalive).
#pragma once

#include <memory>
#include <string>
#include <unordered_set>

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/hub_internal.hpp"
#include "actors/sink.hpp"
#include "protocol/codec.hpp"

namespace livehub {

/// What the transport tells a client actor about its connection.
using client_actor = caf::typed_actor<
  /// A text message arrived.
  caf::reacts_to<text_atom, std::string>,
  /// The connection ended.
  caf::reacts_to<closed_atom>>;

/// What a connection may do, decided at the upgrade.
struct client_rights {
  /// A trusted publisher may publish to any channel, "*" included.
  bool trusted = false;
};

struct client_state {
  hub_internal_actor hub;
  std::shared_ptr<sink> out;
  /// The hub's config (its channel policy), counters and routes (the hub's
  /// channels: publications go straight to their subscribers).
  hub_shared shared;
  client_rights rights;
  std::unordered_set<std::string> subscriptions;

  /// Sends a reply frame, counting a slow consumer if it is refused so.
  void reply(const frame_ptr& frame);

  /// Sends an error frame (and counts it).
  void fail(codec::error_code code, std::string_view message,
            std::string_view id);

  static const char* name;
};

/// Spawned by the transport for each opened connection.
client_actor::behavior_type
client(client_actor::stateful_pointer<client_state> self,
       hub_internal_actor hub, std::shared_ptr<sink> out, hub_shared shared,
       client_rights rights);

} // namespace livehub

// The hub actor: its typed handle and spawn_hub().
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor_addr.hpp>
#include <caf/actor_cast.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "livehub/config.hpp"
#include "livehub/fwd.hpp"
#include "livehub/messages.hpp"

namespace livehub {

class sink;
struct hub_counters;
class route_table;

/// The counters a hub shares with its channels, clients and server.
using hub_counters_ptr = std::shared_ptr<hub_counters>;

/// A hub's channels by name, shared with its client actors (internal).
using route_table_ptr = std::shared_ptr<route_table>;

/// What an application actor implements to receive the publications of the
/// channels it subscribes to (a `caf::actor` with a `publication` handler
/// converts to it with `caf::actor_cast`).
using subscriber_actor = caf::typed_actor<caf::reacts_to<publication>>;

/// A connection as the hub and channels see it: its client actor and the sink
/// that writes to its socket. Used by livehub's client actors.
struct connection_ref {
  /// A strong reference: monitoring through a weak actor_addr is unsafe in
  /// CAF 0.17 once the actor is gone (a dangling pointer), and a client may
  /// quit before its registration is processed.
  caf::strong_actor_ptr client;
  std::shared_ptr<livehub::sink> out;

  /// The client's address, the key under which it is registered.
  caf::actor_addr address() const {
    return caf::actor_cast<caf::actor_addr>(client);
  }
};

/// The hub: routes publications to channels, spawns one channel actor per
/// topic on its first subscriber and removes it when the topic has none, and
/// knows every open connection (for `"*"` and stats).
using hub_actor = caf::typed_actor<
  // -- the application's API ---------------------------------------------
  /// Publishes to a channel (`"*"`: every open connection). The publication
  /// must be valid (see `make_publication` and `livehub::publish`).
  caf::reacts_to<caf::publish_atom, publication>,
  /// Subscribes an application actor to a channel; replies once the channel
  /// delivers to it.
  caf::replies_to<caf::subscribe_atom, std::string,
                  subscriber_actor>::with<caf::ok_atom>,
  /// Unsubscribes an actor (or connection) from a channel; replies once no
  /// further publication reaches it. Not subscribed is not an error.
  caf::replies_to<caf::unsubscribe_atom, std::string,
                  caf::actor_addr>::with<caf::ok_atom>,
  /// Returns the hub's figures.
  caf::replies_to<stats_atom>::with<hub_stats>,
  // -- used by livehub's client actors -----------------------------------
  /// Registers an open connection (the hub monitors its client actor).
  caf::reacts_to<caf::join_atom, connection_ref>,
  /// Returns the counters shared with the server and client actors.
  caf::replies_to<caf::get_atom>::with<hub_counters_ptr>,
  /// Returns the route table client actors publish through.
  caf::replies_to<caf::get_atom, routes_atom>::with<route_table_ptr>,
  /// Subscribes a connection to a channel.
  caf::replies_to<caf::subscribe_atom, std::string,
                  connection_ref>::with<caf::ok_atom>,
  // -- used by livehub's channel actors ----------------------------------
  /// A channel has no subscriber left after seeing this many subscribes.
  caf::reacts_to<idle_atom, std::string, uint64_t>>;

/// Spawns a hub with the settings of `cfg` (see hub_config).
hub_actor spawn_hub(caf::actor_system& sys, const hub_config& cfg);

/// Validates channel, type and data, then sends the publication to `hub`.
/// Returns an error (and sends nothing) when any of them is invalid.
caf::error publish(const hub_actor& hub, std::string channel, std::string type,
                   std::string_view json_data);

} // namespace livehub

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::connection_ref)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::frame_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::hub_counters_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::route_table_ptr)

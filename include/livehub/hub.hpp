// The hub actor: its typed handle and spawn_hub().
#pragma once

#include <string>
#include <string_view>

#include <caf/actor_addr.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "livehub/config.hpp"
#include "livehub/fwd.hpp"
#include "livehub/identity.hpp"
#include "livehub/messages.hpp"

namespace livehub {

/// What an application actor implements to receive the publications of the
/// channels it subscribes to (a `caf::actor` with a `publication` handler
/// converts to it with `caf::actor_cast`).
using subscriber_actor = caf::typed_actor<caf::reacts_to<publication>>;

/// The hub, as an application uses it: routes publications to channels (one
/// channel actor per topic, spawned on its first subscriber and removed when
/// it has none) and knows every open connection (for `"*"` and stats).
///
/// This is the whole public interface. The hub also answers messages of
/// livehub's own actors and transport, which are not part of it.
using hub_actor = caf::typed_actor<
  /// Publishes to a channel (`"*"`: every open connection). The publication
  /// must be valid (see `make_publication` and `livehub::publish`).
  caf::reacts_to<caf::publish_atom, publication>,
  /// Subscribes an application actor to a channel; replies once the channel
  /// delivers to it. An invalid channel name (or `"*"`) is an error.
  caf::replies_to<caf::subscribe_atom, std::string,
                  subscriber_actor>::with<caf::ok_atom>,
  /// As above, receiving only the publications whose tags pass `filter`
  /// (see livehub/filter.hpp and tag_filter::parse). Subscribing an actor
  /// again replaces its filter (an empty filter removes it).
  caf::replies_to<caf::subscribe_atom, std::string, subscriber_actor,
                  tag_filter>::with<caf::ok_atom>,
  /// Unsubscribes an actor from a channel; replies once no further
  /// publication reaches it. Not subscribed is not an error.
  caf::replies_to<caf::unsubscribe_atom, std::string,
                  caf::actor_addr>::with<caf::ok_atom>,
  /// Returns the hub's figures (those of `GET /api/stats`).
  caf::replies_to<stats_atom>::with<hub_stats>,
  /// The last `limit` publications (at most history-size) of a history
  /// channel, oldest first, with its position. An error for a channel that
  /// is no history channel (livehub.history-channels).
  caf::replies_to<history_atom, std::string, uint64_t>::with<history_page>,
  /// Subscribes an application actor to a history channel from a position
  /// it saw (offset and epoch): replies with what it missed since, if the
  /// history still holds all of it (`recovered`), and the channel's position;
  /// live publications (with their offsets) follow the reply. An error for a
  /// channel that is no history channel.
  caf::replies_to<caf::subscribe_atom, std::string, subscriber_actor,
                  stream_position>::with<history_page>,
  /// Who is subscribed to a presence channel (livehub.presence-channels):
  /// one identity per connection. An error for a channel that is no
  /// presence channel.
  caf::replies_to<presence_atom, std::string>::with<std::vector<identity>>>;

/// Spawns a hub. It keeps `cfg` and applies its channel policy to every
/// connection of every server bound to it: `client_publish`,
/// `client_publish_check` and `max_subscriptions` (see hub_config; the other
/// settings belong to server::start). `cfg` must be valid (see
/// hub_config::validate and read_config).
hub_actor spawn_hub(caf::actor_system& sys, const hub_config& cfg);

/// Validates channel, type and data, then sends the publication to `hub`.
/// Returns an error (and sends nothing) when any of them is invalid.
caf::error publish(const hub_actor& hub, std::string channel, std::string type,
                   std::string_view json_data);

} // namespace livehub

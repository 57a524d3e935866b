// The messages an application exchanges with a hub: publication, hub_stats,
// and livehub's atoms, in one CAF type-ID block.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "livehub/filter.hpp"
#include "livehub/json.hpp"

namespace livehub {

/// One message on a channel: what browsers receive as
/// `{"channel":...,"type":...,"data":...}`.
struct publication {
  /// The channel; `"*"` addresses every open connection.
  std::string channel;

  /// The event type, the frame's `"type"` field (e.g. "message").
  std::string type;

  /// The payload, any JSON value.
  json_text data;

  /// On a history channel: the publication's offset in its channel's stream
  /// (1, 2, 3, ...), set by livehub when it delivers or returns it. 0
  /// elsewhere, and ignored in what an application publishes.
  uint64_t offset = 0;

  /// Tags a subscriber's filter reads (see livehub/filter.hpp); delivered
  /// frames carry them as `"tags"`. At most 16, keys and values at most 64
  /// bytes (checked by validate and make_publication).
  tag_map tags{};
};

/// Checks a publication's channel name and event type (channel: 1 to 255 bytes
/// of UTF-8 without control characters, or `"*"`; type: at most 255 bytes).
caf::error validate(const publication& x);

/// Makes a publication from JSON text, checking all of it.
caf::expected<publication> make_publication(std::string channel,
                                            std::string type,
                                            std::string_view json_data);

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, publication& x) {
  return f(caf::meta::type_name("livehub.publication"), x.channel, x.type,
           x.data, x.offset, x.tags);
}

/// A position in a history channel's stream: an offset and the epoch it
/// belongs to.
struct stream_position {
  uint64_t offset = 0;
  std::string epoch;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, stream_position& x) {
  return f(caf::meta::type_name("livehub.stream_position"), x.offset, x.epoch);
}

/// Publications of a history channel (oldest first, each with its offset)
/// and the channel's position: the answer to a history request, and to a
/// subscribe that recovers.
struct history_page {
  std::vector<publication> publications;
  /// The offset of the channel's last publication and its epoch.
  stream_position position;
  /// For a recovering subscribe: whether `publications` are everything
  /// after the position asked for (false: the application must reload its
  /// state another way).
  bool recovered = false;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_page& x) {
  return f(caf::meta::type_name("livehub.history_page"), x.publications,
           x.position, x.recovered);
}

/// A snapshot of a hub's figures, as `GET /api/stats` reports them.
struct hub_stats {
  /// Open WebSocket connections.
  uint64_t connections = 0;
  /// Channels with at least one subscriber.
  uint64_t channels = 0;
  /// Connection-channel subscription pairs.
  uint64_t subscriptions = 0;
  /// Application actors subscribed to channels (actor-channel pairs).
  uint64_t actor_subscriptions = 0;
  /// Publications accepted since start (HTTP, WebSocket and C++ API).
  uint64_t published = 0;
  /// Frames handed to connections (and publications to actors) since start.
  uint64_t delivered = 0;
  /// Connections closed with 4008 (send queue limit or write timeout).
  uint64_t slow_consumer_disconnects = 0;
  /// Commands answered with an error frame.
  uint64_t command_errors = 0;
  /// Upgrades and HTTP publishes refused for their Origin (403).
  uint64_t rejected_origin = 0;
  /// Upgrades refused because max-connections was reached (503).
  uint64_t rejected_capacity = 0;
  /// Upgrades refused because their address reached
  /// max-connections-per-ip (429).
  uint64_t rejected_rate = 0;
  /// Connections closed with 4001 (bad token, no connect in time).
  uint64_t unauthorized_disconnects = 0;
  /// Connections closed with 4002 (token expired without a refresh).
  uint64_t expired_disconnects = 0;
  /// Connections closed with 4029 (kept exceeding the command rate).
  uint64_t rate_limited_disconnects = 0;
  /// Publications refused because the broker (livehub.broker) was
  /// unavailable: HTTP 503, command error `unavailable`, or dropped from
  /// the C++ API.
  uint64_t broker_refused = 0;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, hub_stats& x) {
  return f(caf::meta::type_name("livehub.hub_stats"), x.connections, x.channels,
           x.subscriptions, x.actor_subscriptions, x.published, x.delivered,
           x.slow_consumer_disconnects, x.command_errors, x.rejected_origin,
           x.rejected_capacity, x.rejected_rate, x.unauthorized_disconnects,
           x.expired_disconnects, x.rate_limited_disconnects, x.broker_refused);
}

} // namespace livehub

// livehub's type IDs start well above CAF's first custom ID, so that host
// applications keep room for their own block below it.
CAF_BEGIN_TYPE_ID_BLOCK(livehub, caf::first_custom_type_id + 1000)

CAF_ADD_TYPE_ID(livehub, (livehub::publication))
CAF_ADD_TYPE_ID(livehub, (livehub::hub_stats))
CAF_ADD_TYPE_ID(livehub, (livehub::json_text))
CAF_ADD_TYPE_ID(livehub, (livehub::stream_position))
CAF_ADD_TYPE_ID(livehub, (livehub::history_page))
CAF_ADD_TYPE_ID(livehub, (livehub::tag_filter))

/// Asks a hub for its hub_stats.
CAF_ADD_ATOM(livehub, livehub, stats_atom, "lh_stats")
/// Asks an application's authorizer (see livehub/identity.hpp).
CAF_ADD_ATOM(livehub, livehub, authorize_atom, "lh_auth")
/// Asks a hub for a history channel's publications.
CAF_ADD_ATOM(livehub, livehub, history_atom, "lh_hist")
/// Asks a hub who is in a presence channel.
CAF_ADD_ATOM(livehub, livehub, presence_atom, "lh_pres")
// Atoms of livehub's internal messages (between its own actors and
// transport; applications do not send them).
/// A channel tells its hub that it has no subscriber left.
CAF_ADD_ATOM(livehub, livehub, idle_atom, "lh_idle")
/// A connection delivered a text message to its client actor.
CAF_ADD_ATOM(livehub, livehub, text_atom, "lh_text")
/// A connection ended.
CAF_ADD_ATOM(livehub, livehub, closed_atom, "lh_closed")
/// Asks a hub for a page of its channels (GET /api/channels).
CAF_ADD_ATOM(livehub, livehub, channels_atom, "lh_chans")
/// From the broker: a remote publication to "*", or a channel's broker
/// subscription took effect.
CAF_ADD_ATOM(livehub, livehub, remote_atom, "lh_remote")
/// Runs a task in an actor (the answer of a broker, from its thread).
CAF_ADD_ATOM(livehub, livehub, task_atom, "lh_task")

CAF_END_TYPE_ID_BLOCK(livehub)

// The hub's full interface: the application's API (livehub::hub_actor) plus
// the messages livehub's own actors and transport exchange with it. Internal:
// applications see only include/livehub/hub.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_addr.hpp>
#include <caf/actor_cast.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include "actors/broker.hpp"
#include "livehub/config.hpp"
#include "livehub/hub.hpp"

namespace livehub {

class sink;
struct hub_counters;
class route_table;

namespace token {
class verifier;
} // namespace token

/// What client actors derive from their hub's config, once (spawn_hub).
struct client_policy {
  /// hub_config::effective_public_channels().
  std::vector<std::string> public_channels;
  /// Verifies tokens; null when no token key is set.
  std::shared_ptr<const token::verifier> verifier;
  /// This hub's random prefix of client ids (unique across a cluster).
  std::string node;
};

/// The counters a hub shares with its channels, clients and server.
using hub_counters_ptr = std::shared_ptr<hub_counters>;

/// A hub's channels by name, shared with its client actors.
using route_table_ptr = std::shared_ptr<route_table>;

/// A connection as the hub and channels see it: its client actor and the sink
/// that writes to its socket.
struct connection_ref {
  /// A strong reference: monitoring through a weak actor_addr is unsafe in
  /// CAF 0.17 once the actor is gone (a dangling pointer), and a client may
  /// quit before its registration is processed.
  caf::strong_actor_ptr client;
  std::shared_ptr<livehub::sink> out;
  /// The peer's address, where an observer wants it (keepalive).
  std::string peer;
  /// A subscribe: the subscription's tag filter (null: none). Subscribing
  /// again replaces it.
  tag_filter_ptr filter = nullptr;

  /// The client's address, the key under which it is registered.
  caf::actor_addr address() const {
    return caf::actor_cast<caf::actor_addr>(client);
  }
};

class channel_history;

/// A connection's subscribe to a history or presence channel. Its channel
/// answers it itself: on a history channel under the history's lock, the
/// replayed publications (when it recovers), then the reply frame with the
/// position, then it joins, so no publication falls between (and none comes
/// twice); on a presence channel it records who joined and tells the
/// subscribers.
struct subscribe_request {
  /// The command's id; no reply frame when empty.
  std::string id;
  /// Recover from `offset` of `epoch` (a `since`).
  bool recover = false;
  uint64_t offset = 0;
  std::string epoch;
  /// A presence channel: who joins.
  bool presence = false;
  identity who;
};

/// What a hub shares with the server bound to it (asked once, at start).
struct hub_shared {
  /// Counters the server and client actors add to.
  hub_counters_ptr counters;
  /// The channels client actors publish through (see route_table).
  route_table_ptr routes;
  /// The config the hub was spawned with: client actors apply its policy
  /// (client-publish, client_publish_check, max-subscriptions, tokens,
  /// rate limits).
  std::shared_ptr<const hub_config> cfg;
  /// What client actors derive from `cfg`.
  std::shared_ptr<const client_policy> policy;
  /// The other nodes (livehub.broker); null on a single node.
  broker_ptr broker;
};

/// One page of a hub's channels, by name (GET /api/channels).
struct channel_page {
  struct entry {
    std::string channel;
    /// Connections and application actors subscribed.
    uint64_t subscribers = 0;
  };
  /// In name order (bytewise).
  std::vector<entry> channels;
  /// The name to pass as `after` for the next page; empty on the last one.
  std::string next;
};

/// A history channel's last publications as frames, with its position
/// (the history command, GET /api/history).
struct history_frames {
  std::vector<frame_ptr> frames;
  uint64_t offset = 0;
  std::string epoch;
};

/// Work for an actor, from another thread (a broker's answer), run in the
/// actor's context.
using actor_task = std::shared_ptr<std::function<void()>>;

/// The hub as livehub's actors and transport see it.
using hub_internal_actor = hub_actor::extend<
  /// Registers an open connection (the hub monitors its client actor).
  caf::reacts_to<caf::join_atom, connection_ref>,
  /// Returns what the hub shares with a server.
  caf::replies_to<caf::get_atom>::with<hub_shared>,
  /// Subscribes a connection to a channel; replies once the channel delivers
  /// to it.
  caf::replies_to<caf::subscribe_atom, std::string,
                  connection_ref>::with<caf::ok_atom>,
  /// Subscribes a connection to a history or presence channel (see
  /// subscribe_request); the channel sends the reply frame itself.
  caf::replies_to<caf::subscribe_atom, std::string, connection_ref,
                  subscribe_request>::with<caf::ok_atom>,
  /// From a channel: it has no subscriber left after seeing this many
  /// subscribes.
  caf::reacts_to<idle_atom, std::string, uint64_t>,
  /// The history sweep's timer (drops publications past history-ttl).
  caf::reacts_to<caf::tick_atom>,
  /// From the broker: another node's publication to "*".
  caf::reacts_to<remote_atom, frame_ptr>,
  /// From the broker: the subscription of this generation of a channel
  /// took effect (see hub_state::channel_entry::ready).
  caf::reacts_to<remote_atom, std::string, uint64_t>,
  /// The mirror of this generation of a history channel loaded (several
  /// nodes): the channel is ready.
  caf::reacts_to<remote_atom, std::string, uint64_t, caf::ok_atom>,
  /// Runs a broker's answer in the hub.
  caf::reacts_to<task_atom, actor_task>,
  /// The last `limit` publications of a history channel that pass the
  /// filter (null: all), read from the broker when this node has no live
  /// mirror of the channel (see read_local_history).
  caf::replies_to<history_atom, std::string, uint64_t,
                  tag_filter_ptr>::with<history_frames>,
  /// At most `limit` channels whose names sort after `after` ("" : from the
  /// first), with their subscriber counts.
  caf::replies_to<caf::get_atom, channels_atom, std::string,
                  uint64_t>::with<channel_page>>;

/// `frames` (stored publication frames) read back, with `history`'s
/// position. Needs `history.mtx`.
history_page read_page(const channel_history& history,
                       const std::vector<frame_ptr>& frames);

/// spawn_hub() with a broker of the caller's (null: none); the public one
/// makes the broker `cfg` asks for (make_broker). Tests pass a fake.
hub_actor spawn_hub(caf::actor_system& sys, const hub_config& cfg,
                    broker_ptr broker);

/// The client policy of a hub spawned with `cfg` (spawn_hub; tests).
std::shared_ptr<const client_policy> make_client_policy(const hub_config& cfg);

/// The full interface of a hub handle (unchecked: `hub` must come from
/// spawn_hub; anything else answers the internal messages with an error).
inline hub_internal_actor internal(const hub_actor& hub) {
  return caf::actor_cast<hub_internal_actor>(hub);
}

} // namespace livehub

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::connection_ref)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::hub_shared)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::channel_page)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::subscribe_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<livehub::channel_history>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::frame_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::tag_filter_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::history_frames)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(livehub::actor_task)

// hub: maps channel names to channel actors, spawns them on demand, removes
// them when idle, routes publications, and knows every open connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/channel.hpp"
#include "actors/hub_internal.hpp"
#include "actors/routes.hpp"

namespace livehub {

struct hub_state {
  hub_state() = default;
  hub_state(const hub_state&) = delete;
  hub_state& operator=(const hub_state&) = delete;

  /// Runs when the hub ends, however it ends: closes every connection it
  /// knows with 1001 and tells its client to quit, and closes every channel.
  /// (Rather than each client and channel monitoring the hub: CAF 0.17 keeps
  /// an actor's monitors in a list, so N observers that demonitor it when
  /// they quit cost O(N^2): 5 s to stop a server with 10,000 channels.)
  ~hub_state();

  struct channel_entry {
    channel_actor handle;
    /// Its subscribers; publications go through it (see fanout).
    fanout_ptr fanout;
    /// Subscribes routed to `handle`; see channel_state::subscribes_seen.
    uint64_t routed = 0;
    /// With a broker: whether its broker subscription took effect. Until
    /// then subscribes wait in `waiting` (replying earlier would let a
    /// subscriber miss what other nodes publish right after).
    bool ready = true;
    /// Which broker subscription of this channel (a channel removed and
    /// made again subscribes again).
    uint64_t generation = 0;
    std::vector<std::function<void()>> waiting{};
  };

  std::unordered_map<std::string, channel_entry> channels;

  /// Reverse map for down messages of channels.
  std::unordered_map<caf::actor_addr, std::string> channel_names;

  /// Broker subscriptions made so far (channel_entry::generation).
  uint64_t generations = 0;

  /// Every open connection, for `"*"` and stats.
  std::unordered_map<caf::actor_addr, std::shared_ptr<sink>> connections;

  /// What the hub shares with servers: counters, routes (kept in step with
  /// `channels`) and its config.
  hub_shared shared;

  /// The channel for `topic`, spawned (and monitored, and subscribed at the
  /// broker) when missing; counts one routed subscribe.
  channel_entry& route_subscribe(hub_internal_actor::pointer self,
                                 const std::string& topic);

  /// Delivers `pub` to its channel's subscribers, or to every connection
  /// when its channel is `"*"`, and to the other nodes. False when the
  /// broker is down: then nothing is delivered.
  bool deliver(const publication& pub,
               std::chrono::steady_clock::time_point now);

  /// Hands `frame` to every open connection of this node.
  void deliver_everywhere(const frame_ptr& frame);

  /// Removes the channel `i` points to from the routes and the broker.
  void drop_channel(std::unordered_map<std::string, channel_entry>::iterator i);

  /// The channel `source` (which reported `seen` subscribes) has no
  /// subscriber left: removes it, unless a subscribe is on its way to it.
  void remove_if_idle(hub_internal_actor::pointer self,
                      const caf::actor_addr& source, const std::string& topic,
                      uint64_t seen);

  /// At most `limit` channels named after `after`, in name order.
  channel_page page(const std::string& after, uint64_t limit);

  /// A monitored connection or channel went down: forgets it.
  void forget(const caf::actor_addr& source);

  static const char* name;
};

/// The hub's behaviour; `shared` holds the counters, routes and config it
/// shares with servers, channels and client actors. (Every livehub actor
/// takes arguments: CAF 0.17 dereferences a null argument tuple when spawning
/// a function without any, which UBSan flags.)
hub_internal_actor::behavior_type
hub(hub_internal_actor::stateful_pointer<hub_state> self, hub_shared shared);

} // namespace livehub

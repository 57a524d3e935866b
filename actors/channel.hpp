// channel: one actor per topic. Keeps its subscribers (monitored), encodes
// each publication once and hands the frame to every subscriber.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/stateful_actor.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "livehub/hub.hpp"

namespace livehub {

/// The channel's interface, used by its hub only.
using channel_actor = caf::typed_actor<
  /// Adds a connection; replies once publications reach it.
  caf::replies_to<caf::subscribe_atom, connection_ref>::with<caf::ok_atom>,
  /// Adds an application actor.
  caf::replies_to<caf::subscribe_atom, subscriber_actor>::with<caf::ok_atom>,
  /// Removes a connection or actor; replies once nothing more reaches it.
  caf::replies_to<caf::unsubscribe_atom, caf::actor_addr>::with<caf::ok_atom>,
  /// Fans a publication out to every subscriber.
  caf::reacts_to<caf::publish_atom, publication>,
  /// The hub removed this channel: quit.
  caf::reacts_to<caf::close_atom>>;

struct channel_state {
  /// A connection subscriber: frames go straight to its sink (fast lane).
  struct connection_entry {
    caf::actor_addr client;
    std::shared_ptr<sink> out;
  };

  /// The channel's name.
  std::string topic;

  /// The hub that routes to this channel and decides its removal.
  hub_actor hub;

  hub_counters_ptr counters;

  /// Subscribed connections, iterated by the fan-out.
  std::vector<connection_entry> connections;

  /// Subscribed application actors.
  std::vector<subscriber_actor> actors;

  /// Position of each subscriber in `connections` or `actors`.
  std::unordered_map<caf::actor_addr, size_t> index;

  /// Subscribes seen so far; the hub compares it with the subscribes it
  /// routed here before it removes an idle channel.
  uint64_t subscribes_seen = 0;

  /// Removes `who`; returns false when it was not subscribed.
  bool remove(const caf::actor_addr& who);

  /// Tells the hub when no subscriber is left.
  void report_if_idle(channel_actor::pointer self);

  static const char* name;
};

/// Spawned by the hub for `topic`.
channel_actor::behavior_type
channel(channel_actor::stateful_pointer<channel_state> self, std::string topic,
        hub_actor hub, hub_counters_ptr counters);

} // namespace livehub

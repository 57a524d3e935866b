// fanout: the subscribers of one channel, as publications reach them.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <caf/actor_addr.hpp>

#include "livehub/hub.hpp"

namespace livehub {

/// The subscribers of one channel, shared by the channel actor and its hub.
/// The channel owns the membership: it adds, removes and monitors
/// subscribers, changing the lists under `mtx`. The hub delivers every
/// publication through deliver(), and so do client actors for what their
/// connection publishes (see route_table): a publication costs no message to
/// the channel (with many quiet channels, waking one channel per publication
/// was a large share of the CPU), and from a WebSocket none to the hub.
struct fanout {
  /// A connection subscriber: frames go straight to its sink.
  struct connection_entry {
    caf::actor_addr client;
    std::shared_ptr<sink> out;
  };

  /// Encodes `pub` once (if any connection subscribes), queues the frame on
  /// every subscribed connection and sends `pub` to every subscribed actor;
  /// adds the deliveries and slow consumers to `counters`.
  void deliver(const publication& pub, hub_counters& counters);

  /// Guards both lists.
  std::mutex mtx;
  std::vector<connection_entry> connections;
  std::vector<subscriber_actor> actors;
};

using fanout_ptr = std::shared_ptr<fanout>;

} // namespace livehub

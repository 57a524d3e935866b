// broker: the seam between a hub and the other nodes of a cluster. The hub
// publishes through it what this node accepted and receives from it what
// other nodes accepted; `local` (one node, the default) is no broker at all.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "livehub/fwd.hpp"

namespace livehub {

/// Carries publications between the nodes of a cluster (livehub.broker).
/// Implementations: the Redis broker (transport/redis_broker.hpp) and the
/// tests' fake. Every function may be called from any thread.
class broker {
 public:
  /// Receives the frame of a publication another node accepted (never one
  /// of this node's own), on the broker's thread, in the order that node
  /// published them per channel.
  using remote_handler = std::function<void(const frame_ptr& frame)>;

  virtual ~broker() = default;

  /// Starts delivering remote publications to `handler`. `node` is this
  /// node's id (the hub's prefix of client ids: 16 hex digits, random), by
  /// which the broker tells its own publications from others'. Called once,
  /// before anything else.
  virtual void start(const std::string& node, remote_handler handler) = 0;

  /// Stops: no handler call and no `ready` call starts after it returns.
  virtual void stop() = 0;

  /// Whether publications can go out now. While not, this node refuses
  /// publications (HTTP 503, command error `unavailable`) rather than
  /// accepting what would not reach the other nodes.
  virtual bool up() const = 0;

  /// Sends the frame of a publication this node accepted on `channel`
  /// (`"*"`: every connection of every node) to the other nodes, once.
  virtual void publish(const std::string& channel, const frame_ptr& frame) = 0;

  /// This node has its first local subscriber of `channel`: publications of
  /// other nodes on it must reach this node from now on. `ready` runs (on
  /// any thread, once) when they are sure to: at once when the broker is
  /// down (nothing is published meanwhile, and it subscribes when back).
  virtual void
  subscribe(const std::string& channel, std::function<void()> ready)
    = 0;

  /// The last local subscriber of `channel` left.
  virtual void unsubscribe(const std::string& channel) = 0;
};

using broker_ptr = std::shared_ptr<broker>;

/// The broker that `cfg` asks for (livehub.broker): null for `local`.
/// Defined with the brokers (transport/), so that the actors depend on this
/// seam only.
broker_ptr make_broker(const hub_config& cfg);

} // namespace livehub

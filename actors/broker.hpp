// broker: the seam between a hub and the other nodes of a cluster. The hub
// publishes through it what this node accepted and receives from it what
// other nodes accepted; `local` (one node, the default) is no broker at all.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "livehub/fwd.hpp"

namespace livehub {

/// What a remote_handler receives.
enum class remote_kind : uint8_t {
  /// A publication another node accepted (never one of this node's own),
  /// its frame as that node encoded it.
  publication,
  /// A publication of a history channel, numbered by the shared stream:
  /// the frame carries its "offset", the handler gets its stream's epoch.
  /// This node's own come too: the stream's order is the delivery order on
  /// every node.
  numbered,
  /// A presence event (`join`, `leave`) of a presence channel, from another
  /// node or from the sweep of a dead node's members: delivered as it is,
  /// never numbered or stored.
  presence,
};

/// A history channel's shared stream as the broker keeps it.
struct stream_state {
  /// The stream's epoch.
  std::string epoch;
  /// The offset of its last publication (0: none).
  uint64_t offset = 0;
  /// Its stored publications' frames (each with its "offset"), oldest
  /// first, with how long ago each was stored.
  std::vector<std::pair<frame_ptr, std::chrono::milliseconds>> frames;
};

/// A connection in a presence channel, as the broker keeps it.
struct presence_member {
  /// Its client id (unique across the cluster).
  std::string client;
  /// Its identity as JSON (codec::encode_identity).
  std::string entry;
};

/// Carries publications between the nodes of a cluster (livehub.broker),
/// and keeps what they share: history channels' streams and presence.
/// Implementations: the Redis broker (transport/redis_broker.hpp) and the
/// tests' fake. Every function may be called from any thread; handlers run
/// on the broker's thread.
class broker {
 public:
  /// Receives what other nodes publish (see remote_kind), in the order each
  /// node published per channel (for `numbered`: in offset order). `epoch`
  /// is empty unless `kind` is `numbered`.
  using remote_handler = std::function<void(
    const frame_ptr& frame, remote_kind kind, const std::string& epoch)>;

  /// Receives a history channel's stream (load) or an error.
  using stream_handler = std::function<void(caf::expected<stream_state>)>;

  /// Receives a presence channel's members (identity JSON) or an error.
  using presence_handler
    = std::function<void(caf::expected<std::vector<std::string>>)>;

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

  // -- history channels ------------------------------------------------------

  /// Appends a publication to the shared stream of history channel
  /// `channel` and sends it to every node, this one included (as
  /// `numbered`), in one step, so offsets and delivery order agree on every
  /// node. `head` is its frame without the closing brace: the broker adds
  /// `,"offset":N}`. A stream that does not exist starts with a new epoch.
  virtual void publish_numbered(const std::string& channel, std::string head)
    = 0;

  /// Reads the shared stream of `channel` (made, empty, with a new epoch,
  /// when there is none).
  virtual void load_stream(const std::string& channel, stream_handler done) = 0;

  /// Keeps the streams of `channels` (history channels with subscribers on
  /// this node) from expiring: as on one node, a stream with subscribers
  /// keeps its epoch and offset, however long it stays quiet. Called with
  /// the history sweep.
  virtual void touch_streams(std::vector<std::string> channels) = 0;

  // -- presence channels -----------------------------------------------------

  /// `who` joined presence channel `channel`: recorded for the cluster, and
  /// `event` (its join frame) goes to the other nodes. The record expires
  /// unless refreshed (presence_refresh), so a dead node's members leave.
  virtual void presence_join(const std::string& channel, presence_member who,
                             frame_ptr event)
    = 0;

  /// `client` left `channel`: its record goes, and `event` (its leave frame)
  /// to the other nodes, unless the record had expired (then the sweep told
  /// them already).
  virtual void presence_leave(const std::string& channel,
                              const std::string& client, frame_ptr event)
    = 0;

  /// This node's members of `channel`, refreshed; and members of dead nodes
  /// whose records expired removed, with a leave event to every node.
  /// Called every few seconds while the channel has local members.
  virtual void presence_refresh(const std::string& channel,
                                std::vector<presence_member> members)
    = 0;

  /// Every node's members of `channel`.
  virtual void presence(const std::string& channel, presence_handler done) = 0;
};

using broker_ptr = std::shared_ptr<broker>;

/// How often a channel with local presence members refreshes them with its
/// broker (broker::presence_refresh).
constexpr std::chrono::seconds presence_refresh_period{5};

/// The broker that `cfg` asks for (livehub.broker): null for `local`.
/// Defined with the brokers (transport/), so that the actors depend on this
/// seam only.
broker_ptr make_broker(const hub_config& cfg);

} // namespace livehub

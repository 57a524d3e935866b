// The Redis broker (livehub.broker = redis): publications of every node of a
// cluster go through Redis pub/sub. See docs/cluster.md.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "actors/broker.hpp"

namespace livehub::transport {

/// Settings of a Redis broker.
struct redis_broker_options {
  /// One or more `redis://` URLs: channels are spread over them (shards) by
  /// a stable hash of their names, the same on every node.
  std::vector<std::string> urls;
  /// Prefix of livehub's Redis channel names and keys.
  std::string prefix = "livehub";
  /// Publications a history channel's stream keeps (livehub.history-size).
  size_t history_size = 100;
  /// How long a stream outlives its last publication, and a publication
  /// stays in it (livehub.history-ttl).
  std::chrono::milliseconds history_ttl = std::chrono::seconds{300};
  /// How long a presence record lives unless refreshed: a dead node's
  /// members leave after at most this plus presence_refresh_period.
  std::chrono::milliseconds presence_ttl = std::chrono::seconds{20};
};

/// Makes a Redis broker; it connects when started (on its own I/O thread)
/// and reconnects by itself. An error for a URL that does not parse.
caf::expected<broker_ptr> make_redis_broker(redis_broker_options opts);

/// The shard of `channel` among `shards` (FNV-1a over its bytes): stable
/// across nodes, processes and versions.
size_t shard_of(const std::string& channel, size_t shards);

} // namespace livehub::transport

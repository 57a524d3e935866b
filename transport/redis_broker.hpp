// The Redis broker (livehub.broker = redis): publications of every node of a
// cluster go through Redis pub/sub. See docs/cluster.md.
#pragma once

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
  /// Prefix of livehub's Redis channel names.
  std::string prefix = "livehub";
};

/// Makes a Redis broker; it connects when started (on its own I/O thread)
/// and reconnects by itself. An error for a URL that does not parse.
caf::expected<broker_ptr> make_redis_broker(redis_broker_options opts);

/// The shard of `channel` among `shards` (FNV-1a over its bytes): stable
/// across nodes, processes and versions.
size_t shard_of(const std::string& channel, size_t shards);

} // namespace livehub::transport

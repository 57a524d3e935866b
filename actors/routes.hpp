// route_table: a hub's channels by name, for publishing without a hop
// through the hub.
#pragma once

#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "actors/fanout.hpp"

namespace livehub {

/// The fanout of every channel a hub has, by name. The hub writes it (a
/// channel spawned or removed); client actors read it to deliver what their
/// connection publishes straight to the subscribers, the same way the hub
/// delivers (see fanout). Thread-safe.
///
/// A publisher that finds no channel, or one the hub is removing, reaches
/// nobody: such a channel has no subscriber, and a subscribe racing with the
/// removal creates a new channel after the lookup, so the publication
/// precedes that subscription.
class route_table {
 public:
  /// The fanout of `topic`, or null.
  fanout_ptr find(const std::string& topic) const {
    std::shared_lock<std::shared_mutex> guard{mtx_};
    auto i = routes_.find(topic);
    return i != routes_.end() ? i->second : nullptr;
  }

  void set(const std::string& topic, fanout_ptr subscribers) {
    std::unique_lock<std::shared_mutex> guard{mtx_};
    routes_[topic] = std::move(subscribers);
  }

  /// Removes `topic` if it still routes to `subscribers`.
  void erase(const std::string& topic, const fanout_ptr& subscribers) {
    std::unique_lock<std::shared_mutex> guard{mtx_};
    auto i = routes_.find(topic);
    if (i != routes_.end() && i->second == subscribers)
      routes_.erase(i);
  }

  void clear() {
    std::unique_lock<std::shared_mutex> guard{mtx_};
    routes_.clear();
  }

 private:
  mutable std::shared_mutex mtx_;
  std::unordered_map<std::string, fanout_ptr> routes_;
};

} // namespace livehub

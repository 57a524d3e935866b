// route_table: a hub's channels by name, for publishing without a hop
// through the hub.
#pragma once

#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "actors/fanout.hpp"
#include "actors/history.hpp"

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
    histories_.clear();
  }

  // -- history channels -------------------------------------------------------

  /// The history of `topic`, made (a new stream, with a new epoch) when it
  /// has none.
  history_ptr history(const std::string& topic) {
    {
      std::shared_lock<std::shared_mutex> guard{mtx_};
      if (auto i = histories_.find(topic); i != histories_.end())
        return i->second;
    }
    std::unique_lock<std::shared_mutex> guard{mtx_};
    auto& x = histories_[topic];
    if (!x)
      x = std::make_shared<channel_history>(mirrors);
    return x;
  }

  /// Forgets the history of `topic` (a cluster's mirror whose channel went:
  /// no longer kept up to date).
  void drop_history(const std::string& topic) {
    std::unique_lock<std::shared_mutex> guard{mtx_};
    histories_.erase(topic);
  }

  /// True on a cluster: histories are mirrors of the broker's streams, made
  /// not live (see channel_history::live). Set before use.
  bool mirrors = false;

  /// The history of `topic`, or null.
  history_ptr find_history(const std::string& topic) const {
    std::shared_lock<std::shared_mutex> guard{mtx_};
    auto i = histories_.find(topic);
    return i != histories_.end() ? i->second : nullptr;
  }

  /// Drops what was stored before `cutoff`, and the histories left empty
  /// whose channel has no subscriber (its stream ends: a later publication
  /// starts a new one, with a new epoch).
  void expire_histories(channel_history::clock_type::time_point cutoff) {
    std::unique_lock<std::shared_mutex> guard{mtx_};
    for (auto i = histories_.begin(); i != histories_.end();) {
      std::unique_lock<std::mutex> lock{i->second->mtx};
      i->second->expire(cutoff);
      bool drop = i->second->size() == 0 && routes_.count(i->first) == 0;
      lock.unlock();
      i = drop ? histories_.erase(i) : std::next(i);
    }
  }

  /// Histories kept.
  size_t history_count() const {
    std::shared_lock<std::shared_mutex> guard{mtx_};
    return histories_.size();
  }

 private:
  mutable std::shared_mutex mtx_;
  std::unordered_map<std::string, fanout_ptr> routes_;
  /// Streams of history channels: kept while the channel has subscribers or
  /// stored publications, whatever becomes of its channel actor.
  std::unordered_map<std::string, history_ptr> histories_;
};

} // namespace livehub

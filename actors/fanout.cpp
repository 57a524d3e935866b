#include "actors/fanout.hpp"

#include <optional>

#include <caf/send.hpp>

#include "actors/counters.hpp"
#include "actors/routes.hpp"
#include "actors/sink.hpp"
#include "protocol/codec.hpp"

namespace livehub {

void fanout::deliver(const publication& pub, hub_counters& counters) {
  // Encoded once, before taking the lock: the lock is held only while the
  // frame is queued. Every connection's queue shares the same frame.
  frame_ptr frame;
  if (connection_count.load(std::memory_order_relaxed) > 0)
    frame = codec::encode_publication(pub);
  deliver(pub, frame, counters, position{});
}

void fanout::resume(const caf::actor_addr& client) {
  std::unique_lock<std::mutex> guard{mtx};
  for (auto& sub : connections)
    if (sub.client == client)
      sub.lagging = false;
}

void fanout::deliver(const publication& pub, const frame_ptr& encoded,
                     hub_counters& counters, position pos) {
  auto accepted = std::chrono::steady_clock::now();
  auto frame = encoded;
  auto offset = pos.offset;
  uint64_t delivered = 0;
  uint64_t slow = 0;
  std::unique_lock<std::mutex> guard{mtx};
  // A connection subscribed between the check and the lock: encode now.
  if (!frame && !connections.empty())
    frame = codec::encode_publication(pub);
  if (offset == 0) {
    for (auto& sub : connections) {
      if (!passes(sub.filter, pub.tags))
        continue;
      switch (sub.out->send(frame, accepted)) {
        case sink::result::queued: ++delivered; break;
        case sink::result::slow_consumer: ++slow; break;
        default: break;
      }
    }
  } else {
    // A history channel: a full queue lags instead of closing.
    for (auto& sub : connections) {
      if (sub.lagging || !passes(sub.filter, pub.tags))
        continue;
      switch (sub.out->send_history(frame, accepted)) {
        case sink::result::queued: ++delivered; break;
        case sink::result::lagging:
          sub.lagging = true;
          sub.out->add_gap(pub.channel,
                           codec::encode_gap(pub.channel, offset - 1,
                                             *pos.epoch));
          break;
        default: break;
      }
    }
  }
  if (!actors.empty()) {
    // Actors get the publication itself, with its offset where it has one.
    std::optional<publication> numbered;
    if (offset > 0) {
      numbered = pub;
      numbered->offset = offset;
    }
    for (auto& sub : actors) {
      if (!passes(sub.filter, pub.tags))
        continue;
      caf::anon_send(sub.who, numbered ? *numbered : pub);
      ++delivered;
    }
  }
  guard.unlock();
  hub_counters::add(counters.delivered, delivered);
  if (slow > 0)
    hub_counters::add(counters.slow_consumer_disconnects, slow);
}

void fanout::add(connection_entry entry) {
  std::unique_lock<std::mutex> guard{mtx};
  connections.push_back(std::move(entry));
  connection_count.store(connections.size(), std::memory_order_relaxed);
}

void fanout::add(actor_entry entry) {
  std::unique_lock<std::mutex> guard{mtx};
  actors.push_back(std::move(entry));
}

void fanout::set_filter(const caf::actor_addr& who, tag_filter_ptr filter) {
  std::unique_lock<std::mutex> guard{mtx};
  for (auto& sub : connections)
    if (sub.client == who)
      sub.filter = filter;
  for (auto& sub : actors)
    if (sub.who.address() == who)
      sub.filter = filter;
}

bool is_history_channel(const hub_config& cfg, const std::string& topic) {
  for (auto& pattern : cfg.history_channels)
    if (codec::glob_match(pattern, topic))
      return true;
  return false;
}

bool is_presence_channel(const hub_config& cfg, const std::string& topic) {
  for (auto& pattern : cfg.presence_channels)
    if (codec::glob_match(pattern, topic))
      return true;
  return false;
}

namespace {

/// Delivers `pub` to this node's subscribers (see deliver_publication);
/// `frame`: its frame without offset, when already made.
void deliver_here(const hub_shared& shared, const publication& pub,
                  const frame_ptr& frame,
                  std::chrono::steady_clock::time_point now) {
  auto& counters = *shared.counters;
  // Looked up before the history's lock: nothing takes the route table's
  // lock while holding a history's (see route_table::expire_histories).
  auto subscribers = shared.routes->find(pub.channel);
  if (!is_history_channel(*shared.cfg, pub.channel)) {
    if (!subscribers)
      return;
    if (frame)
      subscribers->deliver(pub, frame, counters, fanout::position{});
    else
      subscribers->deliver(pub, counters);
    return;
  }
  auto history = shared.routes->history(pub.channel);
  std::unique_lock<std::mutex> guard{history->mtx};
  auto offset = history->next_offset();
  auto numbered = codec::encode_publication(pub, offset);
  history->append(numbered, pub.tags, now, shared.cfg->history_size);
  if (subscribers)
    subscribers->deliver(pub, numbered, counters,
                         fanout::position{offset, &history->epoch()});
}

} // namespace

bool refuse_for_broker(const hub_shared& shared) {
  if (!shared.broker || shared.broker->up())
    return false;
  hub_counters::add(shared.counters->broker_refused);
  return true;
}

bool deliver_publication(const hub_shared& shared, const publication& pub,
                         std::chrono::steady_clock::time_point now) {
  if (refuse_for_broker(shared))
    return false;
  frame_ptr frame;
  if (shared.broker) {
    frame = codec::encode_publication(pub);
    shared.broker->publish(pub.channel, frame);
  }
  hub_counters::add(shared.counters->published);
  deliver_here(shared, pub, frame, now);
  return true;
}

void deliver_remote(const hub_shared& shared, const publication& pub,
                    const frame_ptr& frame) {
  deliver_here(shared, pub, frame, std::chrono::steady_clock::now());
}

} // namespace livehub

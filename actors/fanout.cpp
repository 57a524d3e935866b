#include "actors/fanout.hpp"

#include <caf/send.hpp>

#include "actors/counters.hpp"
#include "actors/sink.hpp"
#include "protocol/codec.hpp"

namespace livehub {

void fanout::deliver(const publication& pub, hub_counters& counters) {
  // Encoded once, before taking the lock: the lock is held only while the
  // frame is queued. Every connection's queue shares the same frame.
  auto accepted = std::chrono::steady_clock::now();
  frame_ptr frame;
  if (connection_count.load(std::memory_order_relaxed) > 0)
    frame = codec::encode_publication(pub);
  uint64_t delivered = 0;
  uint64_t slow = 0;
  std::unique_lock<std::mutex> guard{mtx};
  // A connection subscribed between the check and the lock: encode now.
  if (!frame && !connections.empty())
    frame = codec::encode_publication(pub);
  for (auto& sub : connections) {
    switch (sub.out->send(frame, accepted)) {
      case sink::result::queued: ++delivered; break;
      case sink::result::slow_consumer: ++slow; break;
      case sink::result::closed: break;
    }
  }
  for (auto& who : actors) {
    caf::anon_send(who, pub);
    ++delivered;
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

void fanout::add(subscriber_actor who) {
  std::unique_lock<std::mutex> guard{mtx};
  actors.push_back(std::move(who));
}

} // namespace livehub

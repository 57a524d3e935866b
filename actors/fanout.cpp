#include "actors/fanout.hpp"

#include <caf/send.hpp>

#include "actors/counters.hpp"
#include "actors/sink.hpp"
#include "transport/codec.hpp"

namespace livehub {

void fanout::deliver(const publication& pub, hub_counters& counters) {
  uint64_t delivered = 0;
  uint64_t slow = 0;
  std::unique_lock<std::mutex> guard{mtx};
  if (!connections.empty()) {
    // Encoded once; every connection's queue shares the same frame.
    auto frame = codec::encode_publication(pub);
    for (auto& sub : connections) {
      switch (sub.out->send(frame)) {
        case sink::result::queued: ++delivered; break;
        case sink::result::slow_consumer: ++slow; break;
        case sink::result::closed: break;
      }
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

} // namespace livehub

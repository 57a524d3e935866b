#include "actors/fanout.hpp"

#include <caf/send.hpp>

#include "actors/sink.hpp"
#include "transport/codec.hpp"

namespace livehub {

fanout::counts fanout::deliver(const publication& pub) {
  counts result;
  std::unique_lock<std::mutex> guard{mtx};
  if (!connections.empty()) {
    // Encoded once; every connection's queue shares the same frame.
    auto frame = codec::encode_publication(pub);
    for (auto& sub : connections) {
      switch (sub.out->send(frame)) {
        case sink::result::queued: ++result.delivered; break;
        case sink::result::slow_consumer: ++result.slow; break;
        case sink::result::closed: break;
      }
    }
  }
  for (auto& who : actors) {
    caf::anon_send(who, pub);
    ++result.delivered;
  }
  return result;
}

} // namespace livehub

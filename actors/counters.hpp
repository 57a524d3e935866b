// hub_counters: the figures of GET /api/stats that several actors and the
// server update. Relaxed atomics: each is a count, none orders anything.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "livehub/messages.hpp"
#include "protocol/codec.hpp"

namespace livehub {

struct hub_counters {
  std::atomic<uint64_t> channels{0};
  std::atomic<uint64_t> subscriptions{0};
  std::atomic<uint64_t> actor_subscriptions{0};
  std::atomic<uint64_t> published{0};
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> slow_consumer_disconnects{0};
  /// Commands answered with an error frame, by error code (index:
  /// codec::error_code); hub_stats::command_errors is their sum.
  std::array<std::atomic<uint64_t>, codec::error_code_count>
    command_errors_by_code{};
  std::atomic<uint64_t> rejected_origin{0};
  std::atomic<uint64_t> rejected_capacity{0};
  std::atomic<uint64_t> rejected_rate{0};
  std::atomic<uint64_t> unauthorized_disconnects{0};
  std::atomic<uint64_t> expired_disconnects{0};
  std::atomic<uint64_t> rate_limited_disconnects{0};
  std::atomic<uint64_t> broker_refused{0};

  static void add(std::atomic<uint64_t>& x, uint64_t n = 1) {
    x.fetch_add(n, std::memory_order_relaxed);
  }

  static void sub(std::atomic<uint64_t>& x, uint64_t n = 1) {
    x.fetch_sub(n, std::memory_order_relaxed);
  }

  /// A snapshot; `connections` comes from the hub itself.
  hub_stats snapshot(uint64_t connections) const {
    auto get = [](const std::atomic<uint64_t>& x) {
      return x.load(std::memory_order_relaxed);
    };
    hub_stats r;
    r.connections = connections;
    r.channels = get(channels);
    r.subscriptions = get(subscriptions);
    r.actor_subscriptions = get(actor_subscriptions);
    r.published = get(published);
    r.delivered = get(delivered);
    r.slow_consumer_disconnects = get(slow_consumer_disconnects);
    for (auto& x : command_errors_by_code)
      r.command_errors += get(x);
    r.rejected_origin = get(rejected_origin);
    r.rejected_capacity = get(rejected_capacity);
    r.rejected_rate = get(rejected_rate);
    r.unauthorized_disconnects = get(unauthorized_disconnects);
    r.expired_disconnects = get(expired_disconnects);
    r.rate_limited_disconnects = get(rate_limited_disconnects);
    r.broker_refused = get(broker_refused);
    return r;
  }
};

} // namespace livehub

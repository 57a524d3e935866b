// make_broker: the broker livehub.broker names (actors/broker.hpp).
#include "actors/broker.hpp"

#include "livehub/config.hpp"
#include "transport/redis_broker.hpp"

namespace livehub {

broker_ptr make_broker(const hub_config& cfg) {
  if (cfg.broker != "redis")
    return nullptr;
  // A valid config has URLs that parse (hub_config::validate).
  transport::redis_broker_options opts;
  opts.urls = cfg.redis_urls;
  opts.prefix = cfg.redis_prefix;
  opts.history_size = cfg.history_size;
  opts.history_ttl
    = std::chrono::duration_cast<std::chrono::milliseconds>(cfg.history_ttl);
  auto made = transport::make_redis_broker(std::move(opts));
  return made ? std::move(*made) : nullptr;
}

} // namespace livehub

// make_broker: the broker livehub.broker names (actors/broker.hpp).
#include "actors/broker.hpp"

#include "livehub/config.hpp"
#include "transport/redis_broker.hpp"

namespace livehub {

broker_ptr make_broker(const hub_config& cfg) {
  if (cfg.broker != "redis")
    return nullptr;
  // A valid config has URLs that parse (hub_config::validate).
  auto made = transport::make_redis_broker({cfg.redis_urls, cfg.redis_prefix});
  return made ? std::move(*made) : nullptr;
}

} // namespace livehub

// make_broker: the broker livehub.broker names (actors/broker.hpp).
#include "actors/broker.hpp"

#include "livehub/config.hpp"

namespace livehub {

broker_ptr make_broker(const hub_config&) {
  return nullptr;
}

} // namespace livehub

#include "actors/hub.hpp"

#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include "actors/counters.hpp"
#include "actors/sink.hpp"
#include "transport/codec.hpp"

namespace livehub {

const char* hub_state::name = "livehub.hub";

hub_state::~hub_state() {
  for (auto& [addr, out] : connections) {
    out->close(1001, "going away");
    if (auto client = caf::actor_cast<caf::actor>(addr))
      caf::anon_send(client, closed_atom::value);
  }
  routes->clear();
  for (auto& kvp : channels)
    caf::anon_send(kvp.second.handle, caf::close_atom::value);
}

channel_actor& hub_state::route_subscribe(hub_actor::pointer self,
                                          const std::string& topic) {
  auto i = channels.find(topic);
  if (i == channels.end()) {
    auto subs = std::make_shared<fanout>();
    auto ch = self->spawn(channel, topic, caf::actor_cast<hub_actor>(self),
                          subs, counters);
    self->monitor(ch);
    channel_names.emplace(ch.address(), topic);
    routes->set(topic, subs);
    i = channels.emplace(topic, channel_entry{ch, std::move(subs), 0}).first;
  }
  ++i->second.routed;
  return i->second.handle;
}

hub_actor::behavior_type hub(hub_actor::stateful_pointer<hub_state> self,
                             hub_counters_ptr counters) {
  self->state.counters = std::move(counters);
  // Every registration is a monitor: a connection's client actor or a
  // channel that goes away is forgotten here without any bookkeeping call.
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& st = self->state;
    if (st.connections.erase(msg.source) > 0)
      return;
    auto i = st.channel_names.find(msg.source);
    if (i == st.channel_names.end())
      return;
    // Erase the name only if it still maps to the actor that went down: a
    // newer channel may already serve it.
    auto j = st.channels.find(i->second);
    if (j != st.channels.end() && j->second.handle.address() == msg.source) {
      st.routes->erase(j->first, j->second.subs);
      st.channels.erase(j);
    }
    st.channel_names.erase(i);
  });
  return {
    [self](caf::publish_atom, publication& pub) {
      auto& st = self->state;
      hub_counters::add(st.counters->published);
      if (pub.channel == "*") {
        auto frame = codec::encode_publication(pub);
        uint64_t delivered = 0;
        uint64_t slow = 0;
        for (auto& kvp : st.connections) {
          switch (kvp.second->send(frame)) {
            case sink::result::queued: ++delivered; break;
            case sink::result::slow_consumer: ++slow; break;
            case sink::result::closed: break;
          }
        }
        hub_counters::add(st.counters->delivered, delivered);
        if (slow > 0)
          hub_counters::add(st.counters->slow_consumer_disconnects, slow);
        return;
      }
      // Straight to the subscribers, without a message to the channel.
      auto i = st.channels.find(pub.channel);
      if (i == st.channels.end())
        return;
      i->second.subs->deliver(pub, *st.counters);
    },
    [self](caf::subscribe_atom, const std::string& topic,
           subscriber_actor& who) -> caf::result<caf::ok_atom> {
      if (!codec::valid_channel_name(topic) || topic == "*")
        return caf::make_error(caf::sec::invalid_argument, "bad channel name");
      auto& ch = self->state.route_subscribe(self, topic);
      return self->delegate(ch, caf::subscribe_atom::value, std::move(who));
    },
    [self](caf::unsubscribe_atom, const std::string& topic,
           caf::actor_addr& who) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto i = st.channels.find(topic);
      if (i == st.channels.end())
        return caf::ok_atom::value;
      return self->delegate(i->second.handle, caf::unsubscribe_atom::value,
                            std::move(who));
    },
    [self](stats_atom) {
      auto& st = self->state;
      return st.counters->snapshot(st.connections.size());
    },
    [self](caf::join_atom, connection_ref& ref) {
      auto& st = self->state;
      self->monitor(ref.client);
      st.connections.emplace(ref.address(), std::move(ref.out));
    },
    [self](caf::get_atom) {
      return self->state.counters;
    },
    [self](caf::get_atom, routes_atom) {
      return self->state.routes;
    },
    [self](caf::subscribe_atom, const std::string& topic,
           connection_ref& ref) -> caf::result<caf::ok_atom> {
      auto& ch = self->state.route_subscribe(self, topic);
      return self->delegate(ch, caf::subscribe_atom::value, std::move(ref));
    },
    [self](idle_atom, const std::string& topic, uint64_t seen) {
      auto& st = self->state;
      auto i = st.channels.find(topic);
      auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      // Remove the channel only if it has seen every subscribe routed to
      // it; otherwise a subscribe is on its way and the channel stays.
      if (i == st.channels.end() || i->second.handle.address() != sender
          || i->second.routed != seen)
        return;
      self->send(i->second.handle, caf::close_atom::value);
      st.channel_names.erase(sender);
      self->demonitor(i->second.handle.address());
      st.routes->erase(i->first, i->second.subs);
      st.channels.erase(i);
    },
  };
}

hub_actor spawn_hub(caf::actor_system& sys, const hub_config&) {
  return sys.spawn(hub, std::make_shared<hub_counters>());
}

caf::error publish(const hub_actor& hub, std::string channel, std::string type,
                   std::string_view json_data) {
  auto pub = make_publication(std::move(channel), std::move(type), json_data);
  if (!pub)
    return std::move(pub.error());
  caf::anon_send(hub, caf::publish_atom::value, std::move(*pub));
  return caf::none;
}

} // namespace livehub

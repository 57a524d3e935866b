#include "actors/client.hpp"

#include <algorithm>

#include "actors/counters.hpp"
#include "actors/routes.hpp"

namespace livehub {

const char* client_state::name = "livehub.client";

namespace {

/// Subscribe and unsubscribe requests carry no timeout. The hub answers
/// every one (or delegates it to a channel, which does), and a request to an
/// actor that is gone, or that quits with it unanswered, comes back as an
/// error; a local message is never lost. A timeout would buy nothing and
/// cost a lot: CAF 0.17 keeps each request's timeout in its clock until it
/// expires, even after the response, and every actor that quits scans all of
/// them (with 10,000 subscribers, stopping took 5 s and churn twice the
/// CPU).
constexpr auto hub_timeout = caf::infinite;

using codec::error_code;

bool may_publish(const client_state& st, const std::string& topic) {
  if (st.rights.trusted)
    return true;
  if (topic == "*")
    return false;
  auto& patterns = st.shared.cfg->client_publish;
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) {
                       return codec::glob_match(p, topic);
                     });
}

void acknowledge(client_state& st, const std::string& id) {
  if (!id.empty())
    st.reply(codec::encode_ok(id));
}

/// Runs one parsed command. Subscribe and unsubscribe wait for the channel's
/// answer (`await`): later commands and the pong see their full effect.
void run(client_actor::stateful_pointer<client_state> self,
         codec::command& cmd) {
  auto& st = self->state;
  switch (cmd.type) {
    case codec::command_type::ping:
      st.reply(codec::encode_pong(cmd.id));
      return;
    case codec::command_type::subscribe: {
      if (cmd.channel == "*")
        return st.fail(error_code::bad_channel,
                       "\"*\" addresses every connection; it cannot be "
                       "subscribed to",
                       cmd.id);
      if (st.subscriptions.count(cmd.channel) > 0)
        return acknowledge(st, cmd.id);
      if (st.subscriptions.size() >= st.shared.cfg->max_subscriptions)
        return st.fail(error_code::too_many_subscriptions,
                       "at most "
                         + std::to_string(st.shared.cfg->max_subscriptions)
                         + " subscriptions per connection",
                       cmd.id);
      connection_ref ref{caf::actor_cast<caf::strong_actor_ptr>(self), st.out};
      self
        ->request(st.hub, hub_timeout, caf::subscribe_atom::value, cmd.channel,
                  std::move(ref))
        .await(
          [self, topic = cmd.channel, id = cmd.id](caf::ok_atom) {
            self->state.subscriptions.insert(topic);
            acknowledge(self->state, id);
          },
          [self, id = cmd.id](caf::error&) {
            self->state.fail(error_code::internal, "subscribe failed", id);
          });
      return;
    }
    case codec::command_type::unsubscribe: {
      if (st.subscriptions.count(cmd.channel) == 0)
        return acknowledge(st, cmd.id);
      self
        ->request(st.hub, hub_timeout, caf::unsubscribe_atom::value,
                  cmd.channel, self->address())
        .await(
          [self, topic = cmd.channel, id = cmd.id](caf::ok_atom) {
            self->state.subscriptions.erase(topic);
            acknowledge(self->state, id);
          },
          [self, id = cmd.id](caf::error&) {
            self->state.fail(error_code::internal, "unsubscribe failed", id);
          });
      return;
    }
    case codec::command_type::publish: {
      if (!may_publish(st, cmd.channel))
        return st.fail(
          error_code::forbidden,
          "clients may not publish to " + codec::quote(cmd.channel), cmd.id);
      publication pub{std::move(cmd.channel), std::move(cmd.event),
                      std::move(cmd.data)};
      if (!st.rights.trusted && st.shared.cfg->client_publish_check) {
        auto reason = st.shared.cfg->client_publish_check(pub);
        if (!reason.empty())
          return st.fail(error_code::bad_command, reason, cmd.id);
      }
      if (pub.channel == "*") {
        self->send(st.hub, caf::publish_atom::value, std::move(pub));
      } else {
        // Straight to the channel's subscribers, as the hub would (no hop
        // through the hub; see route_table).
        hub_counters::add(st.shared.counters->published);
        if (auto subscribers = st.shared.routes->find(pub.channel))
          subscribers->deliver(pub, *st.shared.counters);
      }
      return acknowledge(st, cmd.id);
    }
  }
}

} // namespace

void client_state::reply(const frame_ptr& frame) {
  if (out->send(frame) == sink::result::slow_consumer)
    hub_counters::add(shared.counters->slow_consumer_disconnects);
}

void client_state::fail(codec::error_code code, std::string_view message,
                        std::string_view id) {
  hub_counters::add(
    shared.counters->command_errors_by_code[static_cast<size_t>(code)]);
  reply(codec::encode_error(code, message, id));
}

client_actor::behavior_type
client(client_actor::stateful_pointer<client_state> self,
       hub_internal_actor hub, std::shared_ptr<sink> out, hub_shared shared,
       client_rights rights) {
  auto& st = self->state;
  st.hub = std::move(hub);
  st.out = std::move(out);
  st.shared = std::move(shared);
  st.rights = rights;
  // The client does not monitor the hub: when the hub ends, it closes the
  // connection and sends closed_atom (see ~hub_state).
  return {
    [self](text_atom, std::string& text) {
      auto& st = self->state;
      auto parsed = codec::parse_command(text);
      if (auto err = std::get_if<codec::parse_error>(&parsed))
        st.fail(err->code, err->message, err->id);
      else
        run(self, std::get<codec::command>(parsed));
      st.out->consumed();
    },
    [self](closed_atom) {
      self->quit();
    },
  };
}

} // namespace livehub

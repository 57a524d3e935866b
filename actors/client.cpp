#include "actors/client.hpp"

#include <algorithm>
#include <atomic>

#include "actors/counters.hpp"
#include "actors/fanout.hpp"
#include "actors/routes.hpp"
#include "protocol/token.hpp"

namespace livehub {

const char* client_state::name = "livehub.client";

// -- subscription_list --------------------------------------------------------

namespace {

/// The first of the sorted `entries` whose channel is not before `channel`
/// (an iterator or a const_iterator, as `entries` is).
template<class Entries>
auto first_not_before(Entries& entries, std::string_view channel) {
  return std::lower_bound(entries.begin(), entries.end(), channel,
                          [](const auto& x, std::string_view y) {
                            return x.first < y;
                          });
}

} // namespace

const tag_filter_ptr* subscription_list::find(std::string_view channel) const {
  auto i = first_not_before(entries_, channel);
  return i != entries_.end() && i->first == channel ? &i->second : nullptr;
}

void subscription_list::set(const std::string& channel, tag_filter_ptr filter) {
  auto i = first_not_before(entries_, channel);
  if (i != entries_.end() && i->first == channel)
    i->second = std::move(filter);
  else
    entries_.emplace(i, channel, std::move(filter));
}

void subscription_list::erase(std::string_view channel) {
  auto i = first_not_before(entries_, channel);
  if (i != entries_.end() && i->first == channel)
    entries_.erase(i);
  // An idle connection keeps no capacity it no longer needs.
  if (entries_.empty() || entries_.capacity() > 2 * entries_.size() + 8)
    entries_.shrink_to_fit();
}

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
using self_ptr = client_actor::stateful_pointer<client_state>;

bool matches_any(const std::vector<std::string>& patterns,
                 const std::string& name) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) {
                       return codec::glob_match(p, name);
                     });
}

/// Both none, or the same expression.
bool same_filter(const tag_filter_ptr& x, const tag_filter_ptr& y) {
  if (!x || !y)
    return !x && !y;
  return *x == *y;
}

void acknowledge(client_state& st, const std::string& id) {
  if (!id.empty())
    st.reply(codec::encode_ok(id));
}

/// A new client id: the hub's random prefix and a process-wide counter.
std::string make_client_id(const client_policy& policy) {
  static std::atomic<uint64_t> next{0};
  auto n = next.fetch_add(1, std::memory_order_relaxed) + 1;
  return policy.node + "-" + std::to_string(n);
}

/// The deadline of a token expiring at unix time `exp` (with the leeway), on
/// the actor clock.
sink::deadline expiry_deadline(self_ptr self, int64_t exp) {
  auto& st = self->state;
  auto leeway = st.shared.policy->verifier->leeway();
  auto now = token::unix_now();
  // A signed token may say anything: no overflow for an exp near the ends
  // of int64, and no deadline beyond ten years (the clock's range is ~292).
  constexpr int64_t ten_years = 10 * 365 * 24 * 3600;
  int64_t left = exp > now ? std::min(exp - now, ten_years) : 0;
  left = std::min(left + std::max<int64_t>(leeway, 0), ten_years);
  return {self->clock().now() + std::chrono::seconds{left},
          sink::token_expired_code};
}

// -- authorization ------------------------------------------------------------

/// Asks the application's authorizer whether this connection may do `action`
/// on `topic`, then runs `allowed` or fails the command with `forbidden`.
/// Without an authorizer: forbidden at once.
template<class F>
void ask_authorizer(self_ptr self, auth_action action, const std::string& topic,
                    const std::string& id, F allowed) {
  auto& st = self->state;
  auto denied = [self, topic, id, action] {
    self->state.fail(error_code::forbidden,
                     std::string{"not allowed to "} + to_string(action) + " "
                       + codec::quote(topic),
                     id);
  };
  auto& authorizer = st.shared.cfg->authorizer;
  if (!authorizer)
    return denied();
  // Awaited: later commands of this connection wait for the answer, so
  // commands still take effect in order.
  self
    ->request(authorizer, st.shared.cfg->authorize_timeout,
              authorize_atom::value, st.who(), action, topic)
    .await(
      [allowed, denied](bool yes) mutable {
        if (yes)
          allowed();
        else
          denied();
      },
      [denied](caf::error&) {
        denied();
      });
}

/// True when a subscription token `jwt` lets this connection subscribe to
/// `topic`: valid, for this user, for this channel.
bool subscription_token_allows(client_state& st, const std::string& jwt,
                               const std::string& topic) {
  auto& verifier = st.shared.policy->verifier;
  if (!verifier || !st.session)
    return false;
  auto result = verifier->verify(jwt, token::unix_now());
  auto c = std::get_if<token::claims>(&result);
  return c && c->sub == st.session->who.user && c->channel == topic;
}

// -- commands -----------------------------------------------------------------

void subscribe(self_ptr self, const std::string& topic, const std::string& id,
               tag_filter_ptr filter) {
  auto& st = self->state;
  connection_ref ref{
    caf::actor_cast<caf::strong_actor_ptr>(self), st.out, {}, filter};
  self
    ->request(st.hub, hub_timeout, caf::subscribe_atom::value, topic,
              std::move(ref))
    .await(
      [self, topic, id, filter](caf::ok_atom) {
        auto& st = self->state;
        st.subscriptions.set(topic, filter);
        acknowledge(st, id);
        st.observe(subscribed_event{st.who().client, st.who().user, topic});
      },
      [self, id](caf::error&) {
        self->state.fail(error_code::internal, "subscribe failed", id);
      });
}

/// Subscribes to a history channel: its channel sends the replayed
/// publications and the reply (see subscribe_request).
void subscribe_history(self_ptr self, const std::string& topic,
                       subscribe_request req, tag_filter_ptr filter) {
  auto& st = self->state;
  connection_ref ref{
    caf::actor_cast<caf::strong_actor_ptr>(self), st.out, {}, filter};
  auto id = req.id;
  self
    ->request(st.hub, hub_timeout, caf::subscribe_atom::value, topic,
              std::move(ref), std::move(req))
    .await(
      [self, topic, filter](caf::ok_atom) {
        auto& st = self->state;
        st.subscriptions.set(topic, filter);
        st.observe(subscribed_event{st.who().client, st.who().user, topic});
      },
      [self, id](caf::error&) {
        self->state.fail(error_code::internal, "subscribe failed", id);
      });
}

/// Runs `allowed` when this connection may read `topic` (subscribe, history,
/// presence), else fails the command with `forbidden`. Allowed when any of
/// these holds, in this order: a trusted publisher, a public channel, the
/// token's channels claim, a subscription token, the authorizer.
template<class F>
void authorize_read(self_ptr self, const std::string& topic,
                    const std::string& jwt, const std::string& id, F allowed) {
  auto& st = self->state;
  if (st.rights.trusted || matches_any(st.shared.policy->public_channels, topic)
      || (st.session && matches_any(st.session->channels, topic))
      || (!jwt.empty() && subscription_token_allows(st, jwt, topic)))
    return allowed();
  ask_authorizer(self, auth_action::subscribe, topic, id, std::move(allowed));
}

void run_subscribe(self_ptr self, codec::command& cmd) {
  auto& st = self->state;
  if (cmd.channel == "*")
    return st.fail(error_code::bad_channel,
                   "\"*\" addresses every connection; it cannot be "
                   "subscribed to",
                   cmd.id);
  bool history = is_history_channel(*st.shared.cfg, cmd.channel);
  bool presence = is_presence_channel(*st.shared.cfg, cmd.channel);
  auto current = st.subscriptions.find(cmd.channel);
  bool subscribed = current != nullptr;
  // Subscribing again changes nothing, except on a history channel, which
  // answers with its position (and may recover), and with another filter,
  // which replaces the subscription's.
  if (subscribed && !history && same_filter(*current, cmd.filter))
    return acknowledge(st, cmd.id);
  if (!subscribed
      && st.subscriptions.size() >= st.shared.cfg->max_subscriptions)
    return st.fail(error_code::too_many_subscriptions,
                   "at most " + std::to_string(st.shared.cfg->max_subscriptions)
                     + " subscriptions per connection",
                   cmd.id);
  if (!history && cmd.since)
    return st.fail(error_code::bad_command,
                   codec::quote(cmd.channel)
                     + " is no history channel: nothing to recover",
                   cmd.id);
  if (!history && !presence) {
    return authorize_read(self, cmd.channel, cmd.token, cmd.id,
                          [self, topic = cmd.channel, id = cmd.id,
                           filter = std::move(cmd.filter)] {
                            subscribe(self, topic, id, filter);
                          });
  }
  subscribe_request req;
  req.id = cmd.id;
  if (presence) {
    req.presence = true;
    req.who = st.identified();
  }
  if (cmd.since) {
    req.recover = true;
    req.offset = cmd.since->offset;
    req.epoch = std::move(cmd.since->epoch);
  }
  authorize_read(self, cmd.channel, cmd.token, cmd.id,
                 [self, topic = cmd.channel, req = std::move(req),
                  filter = std::move(cmd.filter)]() mutable {
                   subscribe_history(self, topic, std::move(req),
                                     std::move(filter));
                 });
}

void run_presence(self_ptr self, codec::command& cmd) {
  auto& st = self->state;
  if (!is_presence_channel(*st.shared.cfg, cmd.channel))
    return st.fail(error_code::bad_command,
                   codec::quote(cmd.channel) + " is no presence channel",
                   cmd.id);
  authorize_read(
    self, cmd.channel, cmd.token, cmd.id,
    [self, topic = cmd.channel, id = cmd.id,
     stats = cmd.type == codec::command_type::presence_stats] {
      self->request(self->state.hub, hub_timeout, presence_atom::value, topic)
        .await(
          [self, id, stats](std::vector<identity>& clients) {
            if (stats)
              self->state.reply(codec::encode_presence_stats(id, clients));
            else
              self->state.reply(std::make_shared<const std::string>(
                codec::encode_presence(id, clients)));
          },
          [self, id](caf::error&) {
            // With a broker: it keeps presence, and it could not be read.
            if (self->state.shared.broker)
              self->state.fail(error_code::unavailable, "broker unavailable",
                               id);
            else
              self->state.fail(error_code::internal, "presence failed", id);
          });
    });
}

void run_history(self_ptr self, codec::command& cmd) {
  auto& st = self->state;
  if (!is_history_channel(*st.shared.cfg, cmd.channel))
    return st.fail(error_code::bad_command,
                   codec::quote(cmd.channel) + " is no history channel",
                   cmd.id);
  // The command's filter, else the subscription's (if any).
  auto filter = std::move(cmd.filter);
  if (auto current = st.subscriptions.find(cmd.channel); !filter && current)
    filter = *current;
  authorize_read(
    self, cmd.channel, cmd.token, cmd.id,
    [self, topic = cmd.channel, id = cmd.id, limit = cmd.limit,
     filter = std::move(filter)] {
      auto& st = self->state;
      if (auto local = read_local_history(st.shared, topic, limit, filter)) {
        st.reply(std::make_shared<const std::string>(codec::encode_history(
          id, local->frames, local->offset, local->epoch)));
        return;
      }
      // Several nodes, and no live mirror here: the hub reads the broker's.
      self
        ->request(st.hub, hub_timeout, history_atom::value, topic, limit,
                  filter)
        .then(
          [self, id](history_frames& x) {
            self->state.reply(std::make_shared<const std::string>(
              codec::encode_history(id, x.frames, x.offset, x.epoch)));
          },
          [self, id](caf::error&) {
            self->state.fail(error_code::unavailable, "broker unavailable", id);
          });
    });
}

void run_unsubscribe(self_ptr self, codec::command& cmd) {
  auto& st = self->state;
  if (!st.subscriptions.find(cmd.channel))
    return acknowledge(st, cmd.id);
  self
    ->request(st.hub, hub_timeout, caf::unsubscribe_atom::value, cmd.channel,
              self->address())
    .await(
      [self, topic = cmd.channel, id = cmd.id](caf::ok_atom) {
        auto& st = self->state;
        st.subscriptions.erase(topic);
        acknowledge(st, id);
        st.observe(unsubscribed_event{st.who().client, st.who().user, topic});
      },
      [self, id = cmd.id](caf::error&) {
        self->state.fail(error_code::internal, "unsubscribe failed", id);
      });
}

/// Publishes an authorized publication (after the application's check).
void publish(self_ptr self, publication pub, const std::string& id) {
  auto& st = self->state;
  if (!st.rights.trusted && st.shared.cfg->client_publish_check) {
    auto reason = st.shared.cfg->client_publish_check(pub, st.who());
    if (!reason.empty())
      return st.fail(error_code::bad_command, reason, id);
  }
  // Refused loudly while the broker is down: never accepted, then lost.
  bool accepted;
  if (pub.channel == "*") {
    accepted = !refuse_for_broker(st.shared);
    if (accepted)
      self->send(st.hub, caf::publish_atom::value, std::move(pub));
  } else {
    // Straight to the channel's subscribers, as the hub would (no hop
    // through the hub; see route_table).
    accepted = deliver_publication(st.shared, pub, self->clock().now());
  }
  if (!accepted)
    return st.fail(error_code::unavailable, "broker unavailable", id);
  acknowledge(st, id);
}

void run_publish(self_ptr self, codec::command& cmd) {
  auto& st = self->state;
  if ((cmd.event == "join" || cmd.event == "leave")
      && is_presence_channel(*st.shared.cfg, cmd.channel))
    return st.fail(error_code::bad_command,
                   "join and leave are the presence events of "
                     + codec::quote(cmd.channel),
                   cmd.id);
  publication pub{std::move(cmd.channel), std::move(cmd.event),
                  std::move(cmd.data), 0, std::move(cmd.tags)};
  if (st.rights.trusted)
    return publish(self, std::move(pub), cmd.id);
  auto& cfg = *st.shared.cfg;
  auto rate = static_cast<double>(cfg.client_publish_rate);
  if (!st.publications.take(self->clock().now(), rate, 2 * rate))
    return st.fail(error_code::rate_limited,
                   "at most " + std::to_string(cfg.client_publish_rate)
                     + " publications per second",
                   cmd.id);
  if (pub.channel == "*")
    return st.fail(error_code::forbidden, "clients may not publish to \"*\"",
                   cmd.id);
  // Allowed by livehub.client-publish, the token's publish claim, or the
  // authorizer.
  if (matches_any(cfg.client_publish, pub.channel)
      || (st.session && matches_any(st.session->publish, pub.channel)))
    return publish(self, std::move(pub), cmd.id);
  auto topic = pub.channel;
  ask_authorizer(self, auth_action::publish, topic, cmd.id,
                 [self, pub = std::move(pub), id = cmd.id]() mutable {
                   publish(self, std::move(pub), id);
                 });
}

void run_connect(self_ptr self, codec::command& cmd) {
  auto& st = self->state;
  if (st.session && st.session->connected)
    return st.fail(error_code::bad_command, "already connected", cmd.id);
  auto session = std::make_unique<client_session>();
  session->connected = true;
  auto& policy = *st.shared.policy;
  if (st.shared.cfg->tokens_enabled()) {
    // The token's info counts, never the client's own.
    auto verified = policy.verifier
      ? policy.verifier->verify(cmd.token, token::unix_now())
      : token::refusal{"the server's token key is unusable"};
    if (auto err = std::get_if<token::refusal>(&verified)) {
      st.fail(error_code::unauthorized, err->reason, cmd.id);
      return st.close(sink::unauthorized_code);
    }
    auto& c = std::get<token::claims>(verified);
    session->who.user = std::move(c.sub);
    session->who.info = std::move(c.info);
    session->channels = std::move(c.channels);
    session->publish = std::move(c.publish);
    session->expires = c.exp;
    if (c.exp != 0)
      st.out->set_deadline(expiry_deadline(self, c.exp));
    else
      st.out->set_deadline({});
  } else {
    session->who.info = std::move(cmd.info);
  }
  // A client id made earlier (for presence) stays.
  session->who.client = st.session ? std::move(st.session->who.client)
                                   : make_client_id(policy);
  st.reply(codec::encode_connected(cmd.id, session->who.client,
                                   session->who.user, session->expires));
  st.session = std::move(session);
  // With tokens, a connection is known once it connected (without, it was
  // reported when it opened).
  if (st.shared.cfg->tokens_enabled() && !st.rights.trusted)
    st.observe(connected_event{st.session->who.client, st.session->who.user,
                               st.rights.peer});
}

void run_refresh(self_ptr self, codec::command& cmd) {
  auto& st = self->state;
  auto& verifier = st.shared.policy->verifier;
  if (!st.shared.cfg->tokens_enabled())
    return st.fail(error_code::bad_command, "this server does not use tokens",
                   cmd.id);
  if (!st.session)
    return st.fail(error_code::unauthorized, "refresh before connect", cmd.id);
  auto verified = verifier ? verifier->verify(cmd.token, token::unix_now())
                           : token::refusal{"the server's token key is "
                                            "unusable"};
  auto c = std::get_if<token::claims>(&verified);
  if (!c || c->sub != st.session->who.user) {
    st.fail(error_code::unauthorized,
            c ? "the token is for another user"
              : std::get<token::refusal>(verified).reason,
            cmd.id);
    return st.close(sink::unauthorized_code);
  }
  st.session->who.info = std::move(c->info);
  st.session->channels = std::move(c->channels);
  st.session->publish = std::move(c->publish);
  st.session->expires = c->exp;
  st.out->set_deadline(c->exp != 0 ? expiry_deadline(self, c->exp)
                                   : sink::deadline{});
  st.reply(codec::encode_refreshed(cmd.id, c->exp));
}

/// Runs one parsed command. Subscribe and unsubscribe wait for the channel's
/// answer (`await`): later commands and the pong see their full effect.
void run(self_ptr self, codec::command& cmd) {
  auto& st = self->state;
  if (cmd.type == codec::command_type::connect)
    return run_connect(self, cmd);
  // With tokens, nothing but connect runs before a successful connect
  // (trusted publishers need none).
  if (!st.session && !st.rights.trusted && st.shared.cfg->tokens_enabled())
    return st.fail(error_code::unauthorized, "connect first", cmd.id);
  switch (cmd.type) {
    case codec::command_type::ping: return st.reply(codec::encode_pong(cmd.id));
    case codec::command_type::subscribe: return run_subscribe(self, cmd);
    case codec::command_type::unsubscribe: return run_unsubscribe(self, cmd);
    case codec::command_type::publish: return run_publish(self, cmd);
    case codec::command_type::refresh: return run_refresh(self, cmd);
    case codec::command_type::history: return run_history(self, cmd);
    case codec::command_type::presence:
    case codec::command_type::presence_stats: return run_presence(self, cmd);
    case codec::command_type::connect: return; // handled above
  }
}

/// Takes one token of the command bucket; on refusal answers `rate_limited`
/// (or, past command-burst refusals in a row, closes with 4029) and returns
/// false.
bool within_rate(self_ptr self, std::string_view id) {
  auto& st = self->state;
  if (st.rights.trusted)
    return true;
  auto& cfg = *st.shared.cfg;
  if (st.commands.take(self->clock().now(),
                       static_cast<double>(cfg.command_rate),
                       static_cast<double>(cfg.command_burst))) {
    st.refused_in_a_row = 0;
    return true;
  }
  if (++st.refused_in_a_row > cfg.command_burst) {
    st.close(sink::rate_limited_code);
    return false;
  }
  st.fail(
    error_code::rate_limited,
    "at most " + std::to_string(cfg.command_rate) + " commands per second", id);
  return false;
}

} // namespace

bool rate_bucket::take(time_point now, double rate, double burst) {
  if (tokens < 0) {
    tokens = burst;
  } else {
    auto elapsed = std::chrono::duration<double>(now - last).count();
    tokens = std::min(burst, tokens + std::max(0.0, elapsed) * rate);
  }
  last = now;
  if (tokens < 1)
    return false;
  tokens -= 1;
  return true;
}

void client_state::reply(const frame_ptr& frame) {
  if (out->send_reply(frame) == sink::result::slow_consumer)
    hub_counters::add(shared.counters->slow_consumer_disconnects);
}

void client_state::fail(codec::error_code code, std::string_view message,
                        std::string_view id) {
  hub_counters::add(
    shared.counters->command_errors_by_code[static_cast<size_t>(code)]);
  reply(codec::encode_error(code, message, id));
}

void client_state::close(uint16_t code) {
  closing = true;
  if (code == sink::rate_limited_code) {
    hub_counters::add(shared.counters->rate_limited_disconnects);
    out->close(code, "rate limited");
  } else {
    hub_counters::add(shared.counters->unauthorized_disconnects);
    out->close(code, "unauthorized");
    observe(refused_event{"auth", rights.peer});
  }
}

const identity& client_state::who() const {
  static const identity anonymous;
  return session ? session->who : anonymous;
}

const identity& client_state::identified() {
  if (!session) {
    session = std::make_unique<client_session>();
    session->who.client = make_client_id(*shared.policy);
  }
  return session->who;
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
  // With tokens, a connection must connect within connect-timeout (the
  // keepalive sweep enforces the deadline: no timer per connection).
  if (st.shared.cfg->tokens_enabled() && !st.rights.trusted)
    st.out->set_deadline({self->clock().now() + st.shared.cfg->connect_timeout,
                          sink::unauthorized_code});
  else if (st.shared.cfg->observer)
    st.observe(connected_event{st.identified().client, {}, st.rights.peer});
  // The client does not monitor the hub: when the hub ends, it closes the
  // connection and sends closed_atom (see ~hub_state).
  return {
    [self](text_atom, std::string& text) {
      auto& st = self->state;
      if (!st.closing) {
        auto parsed = codec::parse_command(text);
        if (auto err = std::get_if<codec::parse_error>(&parsed)) {
          if (within_rate(self, err->id))
            st.fail(err->code, err->message, err->id);
        } else {
          auto& cmd = std::get<codec::command>(parsed);
          if (within_rate(self, cmd.id))
            run(self, cmd);
        }
      }
      st.out->consumed();
    },
    [self](closed_atom) {
      self->quit();
    },
    [self](closed_atom, uint16_t code, std::string& reason) {
      auto& st = self->state;
      st.observe(disconnected_event{st.who().client, st.who().user, code,
                                    std::move(reason)});
      self->quit();
    },
  };
}

} // namespace livehub

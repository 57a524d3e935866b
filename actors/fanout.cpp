#include "actors/fanout.hpp"

#include <optional>

#include <caf/send.hpp>

#include "actors/counters.hpp"
#include "actors/routes.hpp"
#include "actors/sink.hpp"
#include "protocol/codec.hpp"

namespace livehub {

void fanout::deliver(const publication& pub, hub_counters& counters) {
  // Encoded once, before taking the lock: the lock is held only while the
  // frame is queued. Every connection's queue shares the same frame.
  frame_ptr frame;
  if (connection_count.load(std::memory_order_relaxed) > 0)
    frame = codec::encode_publication(pub);
  deliver(pub, frame, counters, position{});
}

void fanout::resume(const caf::actor_addr& client) {
  std::unique_lock<std::mutex> guard{mtx};
  for (auto& sub : connections)
    if (sub.client == client)
      sub.lagging = false;
}

void fanout::deliver(const publication& pub, const frame_ptr& encoded,
                     hub_counters& counters, position pos) {
  auto accepted = std::chrono::steady_clock::now();
  auto frame = encoded;
  auto offset = pos.offset;
  uint64_t delivered = 0;
  uint64_t slow = 0;
  // Declared before the lock: the writers wake once it is released.
  send_batch batch;
  std::unique_lock<std::mutex> guard{mtx};
  // A connection subscribed between the check and the lock: encode now.
  if (!frame && !connections.empty())
    frame = codec::encode_publication(pub);
  if (offset == 0) {
    for (auto& sub : connections) {
      if (!passes(sub.filter, pub.tags))
        continue;
      switch (sub.out->send(frame, accepted)) {
        case sink::result::queued: ++delivered; break;
        case sink::result::slow_consumer: ++slow; break;
        default: break;
      }
    }
  } else {
    // A history channel: a full queue lags instead of closing.
    for (auto& sub : connections) {
      if (sub.lagging || !passes(sub.filter, pub.tags))
        continue;
      switch (sub.out->send_history(frame, accepted)) {
        case sink::result::queued: ++delivered; break;
        case sink::result::lagging:
          sub.lagging = true;
          sub.out->add_gap(pub.channel,
                           codec::encode_gap(pub.channel, offset - 1,
                                             *pos.epoch));
          break;
        default: break;
      }
    }
  }
  if (!actors.empty()) {
    // Actors get the publication itself, with its offset where it has one.
    std::optional<publication> numbered;
    if (offset > 0) {
      numbered = pub;
      numbered->offset = offset;
    }
    for (auto& sub : actors) {
      if (!passes(sub.filter, pub.tags))
        continue;
      caf::anon_send(sub.who, numbered ? *numbered : pub);
      ++delivered;
    }
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

void fanout::add(actor_entry entry) {
  std::unique_lock<std::mutex> guard{mtx};
  actors.push_back(std::move(entry));
}

void fanout::set_filter(const caf::actor_addr& who, tag_filter_ptr filter) {
  std::unique_lock<std::mutex> guard{mtx};
  for (auto& sub : connections)
    if (sub.client == who)
      sub.filter = filter;
  for (auto& sub : actors)
    if (sub.who.address() == who)
      sub.filter = filter;
}

void fanout::gap_all(const std::string& channel, const frame_ptr& gap) {
  send_batch batch; // declared before the lock, as in deliver()
  std::unique_lock<std::mutex> guard{mtx};
  for (auto& sub : connections) {
    if (sub.lagging)
      continue;
    sub.lagging = true;
    sub.out->add_gap(channel, gap);
  }
}

bool is_history_channel(const hub_config& cfg, const std::string& topic) {
  for (auto& pattern : cfg.history_channels)
    if (codec::glob_match(pattern, topic))
      return true;
  return false;
}

bool is_presence_channel(const hub_config& cfg, const std::string& topic) {
  for (auto& pattern : cfg.presence_channels)
    if (codec::glob_match(pattern, topic))
      return true;
  return false;
}

namespace {

/// Delivers `pub` to this node's subscribers (see deliver_publication);
/// `frame`: its frame without offset, when already made.
void deliver_here(const hub_shared& shared, const publication& pub,
                  const frame_ptr& frame,
                  std::chrono::steady_clock::time_point now) {
  auto& counters = *shared.counters;
  // Looked up before the history's lock: nothing takes the route table's
  // lock while holding a history's (see route_table::expire_histories).
  auto subscribers = shared.routes->find(pub.channel);
  if (!is_history_channel(*shared.cfg, pub.channel)) {
    if (!subscribers)
      return;
    if (frame)
      subscribers->deliver(pub, frame, counters, fanout::position{});
    else
      subscribers->deliver(pub, counters);
    return;
  }
  auto history = shared.routes->history(pub.channel);
  std::unique_lock<std::mutex> guard{history->mtx};
  auto offset = history->next_offset();
  auto numbered = codec::encode_publication(pub, offset);
  history->append(numbered, pub.tags, now, shared.cfg->history_size);
  if (subscribers)
    subscribers->deliver(pub, numbered, counters,
                         fanout::position{offset, &history->epoch()});
}

} // namespace

bool refuse_for_broker(const hub_shared& shared) {
  if (!shared.broker || shared.broker->up())
    return false;
  hub_counters::add(shared.counters->broker_refused);
  return true;
}

bool deliver_publication(const hub_shared& shared, const publication& pub,
                         std::chrono::steady_clock::time_point now) {
  if (refuse_for_broker(shared))
    return false;
  frame_ptr frame;
  if (shared.broker && is_history_channel(*shared.cfg, pub.channel)) {
    // The shared stream numbers it; every node, this one included, delivers
    // it from the broker, in offset order (deliver_numbered).
    auto encoded = codec::encode_publication(pub);
    shared.broker->publish_numbered(
      pub.channel, std::string{encoded->data(), encoded->size() - 1});
    hub_counters::add(shared.counters->published);
    return true;
  }
  if (shared.broker) {
    frame = codec::encode_publication(pub);
    shared.broker->publish(pub.channel, frame);
  }
  hub_counters::add(shared.counters->published);
  deliver_here(shared, pub, frame, now);
  return true;
}

void deliver_remote(const hub_shared& shared, const publication& pub,
                    const frame_ptr& frame) {
  deliver_here(shared, pub, frame, std::chrono::steady_clock::now());
}

namespace {

/// deliver_numbered() with the mirror's lock held; true when the mirror
/// must load again (reload(), once the lock is released).
bool apply_numbered(const hub_shared& shared, channel_history& history,
                    const fanout_ptr& subscribers, const publication& pub,
                    const frame_ptr& frame, const std::string& epoch) {
  if (!history.live) {
    history.pending.push_back({pub, frame, epoch});
    return false;
  }
  if (epoch == history.epoch()) {
    if (pub.offset <= history.last_offset())
      return false; // had it (it waited while the mirror loaded it)
    if (pub.offset == history.last_offset() + 1) {
      history.append(frame, pub.tags, std::chrono::steady_clock::now(),
                     shared.cfg->history_size);
      if (subscribers)
        subscribers->deliver(pub, frame, *shared.counters,
                             fanout::position{pub.offset, &history.epoch()});
      return false;
    }
  }
  // A break: publications went by unseen (this node was cut off from the
  // broker), or the stream started anew. Every connection gets a gap from
  // where it is, and the mirror loads again.
  if (subscribers)
    subscribers->gap_all(pub.channel,
                         codec::encode_gap(pub.channel, history.last_offset(),
                                           history.epoch()));
  history.live = false;
  history.pending.push_back({pub, frame, epoch});
  return true;
}

/// Loads the mirror `history` of `topic` again.
void reload(const hub_shared& shared, const std::string& topic,
            const history_ptr& history) {
  shared.broker->load_stream(
    topic, [shared, topic, history](caf::expected<stream_state> st) {
      install_stream(shared, topic, history, std::move(st));
    });
}

} // namespace

void deliver_numbered(const hub_shared& shared, const publication& pub,
                      const frame_ptr& frame, const std::string& epoch) {
  // No mirror: no local subscriber (the hub makes it with the channel).
  auto history = shared.routes->find_history(pub.channel);
  if (!history)
    return;
  auto subscribers = shared.routes->find(pub.channel);
  std::unique_lock<std::mutex> guard{history->mtx};
  if (apply_numbered(shared, *history, subscribers, pub, frame, epoch)) {
    guard.unlock();
    reload(shared, pub.channel, history);
  }
}

void load_stream_into(channel_history& history, const stream_state& stream,
                      size_t max_size) {
  auto now = std::chrono::steady_clock::now();
  history.reset(stream.epoch, stream.offset);
  if (stream.frames.empty())
    return;
  bool first = true;
  for (auto& [frame, age] : stream.frames) {
    auto pub = codec::parse_publication_frame(*frame);
    if (!pub || pub->offset == 0 || pub->offset > stream.offset)
      continue;
    if (first) {
      history.reset(stream.epoch, pub->offset - 1);
      first = false;
    }
    history.append_at(pub->offset, frame, pub->tags, now - age, max_size);
  }
  if (history.last_offset() != stream.offset)
    history.reset(stream.epoch, stream.offset); // not contiguous: keep none
}

void install_stream(const hub_shared& shared, const std::string& topic,
                    const history_ptr& mirror,
                    caf::expected<stream_state> stream) {
  auto& history = *mirror;
  auto subscribers = shared.routes->find(topic);
  std::unique_lock<std::mutex> guard{history.mtx};
  auto epoch = history.epoch();
  auto offset = history.last_offset();
  auto pending = std::move(history.pending);
  history.pending.clear();
  if (stream) {
    load_stream_into(history, *stream, shared.cfg->history_size);
  } else if (!pending.empty()) {
    // The broker could not be read: go on from what came.
    history.reset(pending.front().epoch, pending.front().pub.offset - 1);
  }
  history.live = true;
  // Connections that subscribed to the mirror while it was not live have
  // what it had then: a gap if the stream is elsewhere.
  if (subscribers
      && (history.epoch() != epoch || history.last_offset() != offset))
    subscribers->gap_all(topic, codec::encode_gap(topic, offset, epoch));
  bool again = false;
  for (auto& x : pending)
    again = apply_numbered(shared, history, subscribers, x.pub, x.frame,
                           x.epoch)
      || again;
  guard.unlock();
  if (again)
    reload(shared, topic, mirror);
}

std::optional<history_frames>
read_local_history(const hub_shared& shared, const std::string& topic,
                   uint64_t limit, const tag_filter_ptr& filter) {
  auto history = shared.broker ? shared.routes->find_history(topic)
                               : shared.routes->history(topic);
  if (!history)
    return std::nullopt;
  auto n
    = static_cast<size_t>(std::min<uint64_t>(limit, shared.cfg->history_size));
  std::unique_lock<std::mutex> guard{history->mtx};
  if (!history->live)
    return std::nullopt;
  return history_frames{history->last(n, filter), history->last_offset(),
                        history->epoch()};
}

} // namespace livehub

#include "actors/sink.hpp"

#include <algorithm>
#include <utility>

namespace livehub {

// -- send_batch ---------------------------------------------------------------

namespace {

struct batch_state {
  size_t depth = 0;
  std::vector<std::pair<send_batch::wake_fn, void*>> wakes;
};

thread_local batch_state this_thread_batch;

} // namespace

send_batch::send_batch() {
  ++this_thread_batch.depth;
}

send_batch::~send_batch() {
  auto& st = this_thread_batch;
  if (--st.depth > 0)
    return;
  // A wake may open a batch of its own: run from a local copy.
  auto wakes = std::move(st.wakes);
  st.wakes.clear();
  for (auto& [wake, arg] : wakes)
    wake(arg);
}

bool send_batch::defer(wake_fn wake, void* arg) {
  auto& st = this_thread_batch;
  if (st.depth == 0)
    return false;
  for (auto& x : st.wakes)
    if (x.second == arg)
      return true;
  st.wakes.emplace_back(wake, arg);
  return true;
}

sink::sink(size_t max_frames, size_t max_bytes)
  : max_frames_(max_frames), max_bytes_(max_bytes) {
  // nop
}

sink::~sink() {
  // nop
}

void sink::queue_push(uint64_t end) {
  // Drop the written prefix once it is at least half of the vector.
  if (head_ > 0 && head_ * 2 >= ends_.size()) {
    ends_.erase(ends_.begin(), ends_.begin() + static_cast<ptrdiff_t>(head_));
    head_ = 0;
  }
  ends_.push_back(end);
}

uint64_t sink::update_queue() {
  // The connection reports the bytes it wrote; every frame that ends within
  // the written prefix is gone from the queue.
  auto written = std::min(do_written(), total_);
  auto buffered = total_ - written;
  while (head_ < ends_.size() && ends_[head_] <= written)
    ++head_;
  if (head_ == ends_.size())
    queue_clear();
  if (!gaps_.empty() && queue_size() < max_frames_ / 2
      && buffered < max_bytes_ / 2) {
    auto gaps = std::move(gaps_);
    gaps_.clear();
    gaps_waiting_.store(false, std::memory_order_relaxed);
    for (auto& gap : gaps)
      if (queue(gap.second, {}))
        buffered += gap.second->size();
  }
  return buffered;
}

bool sink::queue(const frame_ptr& frame, time_point accepted) {
  if (!do_send(frame, accepted)) {
    closed_ = true;
    queue_clear();
    return false;
  }
  total_ += frame->size();
  queue_push(total_);
  return true;
}

sink::result sink::send(const frame_ptr& frame, time_point accepted) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (closed_)
    return result::closed;
  auto queued_bytes = update_queue();
  if (queue_size() >= max_frames_
      || queued_bytes + frame->size() > max_bytes_) {
    closed_ = true;
    queue_clear();
    do_close(slow_consumer_code, "slow consumer");
    return result::slow_consumer;
  }
  return queue(frame, accepted) ? result::queued : result::closed;
}

sink::result sink::send_history(const frame_ptr& frame, time_point accepted) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (closed_)
    return result::closed;
  auto queued_bytes = update_queue();
  if (queue_size() >= max_frames_ || queued_bytes + frame->size() > max_bytes_)
    return result::lagging;
  return queue(frame, accepted) ? result::queued : result::closed;
}

sink::result sink::send_reply(const frame_ptr& frame) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (closed_)
    return result::closed;
  auto queued_bytes = update_queue();
  if (queued_bytes + frame->size() > max_bytes_) {
    closed_ = true;
    queue_clear();
    do_close(slow_consumer_code, "slow consumer");
    return result::slow_consumer;
  }
  return queue(frame, {}) ? result::queued : result::closed;
}

void sink::add_gap(const std::string& channel, frame_ptr gap) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (closed_)
    return;
  for (auto& x : gaps_)
    if (x.first == channel)
      return;
  gaps_.emplace_back(channel, std::move(gap));
  gaps_waiting_.store(true, std::memory_order_relaxed);
  update_queue();
}

void sink::flush_gaps() {
  std::unique_lock<std::mutex> guard{mtx_};
  if (!closed_)
    update_queue();
}

void sink::drop_gap(const std::string& channel) {
  std::unique_lock<std::mutex> guard{mtx_};
  gaps_.erase(std::remove_if(gaps_.begin(), gaps_.end(),
                             [&](const auto& x) {
                               return x.first == channel;
                             }),
              gaps_.end());
  gaps_waiting_.store(!gaps_.empty(), std::memory_order_relaxed);
}

void sink::close(uint16_t code, const std::string& reason) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (closed_)
    return;
  closed_ = true;
  queue_clear();
  do_close(code, reason);
}

void sink::ping() {
  std::unique_lock<std::mutex> guard{mtx_};
  if (!closed_)
    do_ping();
}

sink::progress sink::write_progress() {
  std::unique_lock<std::mutex> guard{mtx_};
  if (closed_)
    return {total_, 0};
  auto buffered = update_queue();
  return {total_ - buffered, buffered};
}

void sink::set_deadline(deadline x) {
  std::unique_lock<std::mutex> guard{mtx_};
  deadline_ = x;
}

sink::deadline sink::get_deadline() {
  std::unique_lock<std::mutex> guard{mtx_};
  return deadline_;
}

bool sink::closed() {
  std::unique_lock<std::mutex> guard{mtx_};
  return closed_;
}

size_t sink::queued_frames() {
  std::unique_lock<std::mutex> guard{mtx_};
  return queue_size();
}

void sink::consumed() {
  std::unique_lock<std::mutex> guard{mtx_};
  if (!detached_)
    do_consumed();
}

void sink::detach() {
  std::unique_lock<std::mutex> guard{mtx_};
  closed_ = true;
  queue_clear();
  if (!detached_) {
    detached_ = true;
    do_detach();
  }
}

} // namespace livehub

#include "actors/sink.hpp"

#include <algorithm>

namespace livehub {

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
  return buffered;
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
  if (!do_send(frame, accepted)) {
    closed_ = true;
    queue_clear();
    return result::closed;
  }
  total_ += frame->size();
  queue_push(total_);
  return result::queued;
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

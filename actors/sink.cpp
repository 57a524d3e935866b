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

uint64_t sink::update_queue() {
  // The connection reports the bytes it still holds; every frame that ends
  // within the written prefix is gone from the queue.
  auto buffered = std::min(static_cast<uint64_t>(do_buffered_amount()), total_);
  auto written = total_ - buffered;
  while (!ends_.empty() && ends_.front() <= written)
    ends_.pop_front();
  return buffered;
}

sink::result sink::send(const frame_ptr& frame) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (closed_)
    return result::closed;
  auto queued_bytes = update_queue();
  if (ends_.size() >= max_frames_
      || queued_bytes + frame->size() > max_bytes_) {
    closed_ = true;
    ends_.clear();
    do_close(slow_consumer_code, "slow consumer");
    return result::slow_consumer;
  }
  if (!do_send(frame)) {
    closed_ = true;
    ends_.clear();
    return result::closed;
  }
  total_ += frame->size();
  ends_.push_back(total_);
  return result::queued;
}

void sink::close(uint16_t code, const std::string& reason) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (closed_)
    return;
  closed_ = true;
  ends_.clear();
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

bool sink::closed() {
  std::unique_lock<std::mutex> guard{mtx_};
  return closed_;
}

size_t sink::queued_frames() {
  std::unique_lock<std::mutex> guard{mtx_};
  return ends_.size();
}

void sink::consumed() {
  std::unique_lock<std::mutex> guard{mtx_};
  if (!detached_)
    do_consumed();
}

void sink::detach() {
  std::unique_lock<std::mutex> guard{mtx_};
  closed_ = true;
  ends_.clear();
  if (!detached_) {
    detached_ = true;
    do_detach();
  }
}

} // namespace livehub

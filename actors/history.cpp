#include "actors/history.hpp"

#include <random>

namespace livehub {

namespace {

std::string random_epoch() {
  static constexpr char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  thread_local std::mt19937_64 gen{std::random_device{}()};
  std::uniform_int_distribution<size_t> pick(0, sizeof(alphabet) - 2);
  std::string result(8, '0');
  for (auto& c : result)
    c = alphabet[pick(gen)];
  return result;
}

} // namespace

channel_history::channel_history() : epoch_(random_epoch()) {
  // nop
}

void channel_history::append(frame_ptr frame, clock_type::time_point now,
                             size_t max_size) {
  ++last_;
  if (max_size == 0)
    return;
  while (entries_.size() >= max_size)
    entries_.pop_front();
  entries_.push_back({last_, now, std::move(frame)});
}

std::optional<std::vector<frame_ptr>>
channel_history::after(uint64_t offset) const {
  if (offset > last_)
    return std::nullopt;
  std::vector<frame_ptr> result;
  if (offset == last_)
    return result;
  // Every publication after `offset` must still be here.
  if (entries_.empty() || entries_.front().offset > offset + 1)
    return std::nullopt;
  auto first = offset + 1 - entries_.front().offset;
  result.reserve(entries_.size() - first);
  for (auto i = first; i < entries_.size(); ++i)
    result.push_back(entries_[i].frame);
  return result;
}

std::vector<frame_ptr> channel_history::last(size_t n) const {
  n = std::min(n, entries_.size());
  std::vector<frame_ptr> result;
  result.reserve(n);
  for (auto i = entries_.size() - n; i < entries_.size(); ++i)
    result.push_back(entries_[i].frame);
  return result;
}

void channel_history::expire(clock_type::time_point cutoff) {
  while (!entries_.empty() && entries_.front().stored < cutoff)
    entries_.pop_front();
}

} // namespace livehub

#include "actors/history.hpp"

#include <algorithm>
#include <random>

namespace livehub {

std::string new_epoch() {
  static constexpr char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  thread_local std::mt19937_64 gen{std::random_device{}()};
  std::uniform_int_distribution<size_t> pick(0, sizeof(alphabet) - 2);
  std::string result(8, '0');
  for (auto& c : result)
    c = alphabet[pick(gen)];
  return result;
}

channel_history::channel_history(bool mirror)
  : live(!mirror), epoch_(new_epoch()) {
  // nop
}

void channel_history::reset(std::string epoch, uint64_t offset) {
  epoch_ = std::move(epoch);
  last_ = offset;
  entries_.clear();
}

void channel_history::append_at(uint64_t offset, frame_ptr frame,
                                const tag_map& tags,
                                clock_type::time_point stored,
                                size_t max_size) {
  if (offset != last_ + 1)
    entries_.clear(); // a break: only what follows it can be recovered
  last_ = offset - 1;
  append(std::move(frame), tags, stored, max_size);
}

void channel_history::append(frame_ptr frame, const tag_map& tags,
                             clock_type::time_point now, size_t max_size) {
  ++last_;
  if (max_size == 0)
    return;
  while (entries_.size() >= max_size)
    entries_.pop_front();
  std::shared_ptr<const tag_map> kept;
  if (!tags.empty())
    kept = std::make_shared<const tag_map>(tags);
  entries_.push_back({last_, now, std::move(frame), std::move(kept)});
}

bool channel_history::entry::passes(const tag_filter_ptr& filter) const {
  if (!filter)
    return true;
  static const tag_map none;
  return filter->matches(tags ? *tags : none);
}

std::optional<std::vector<frame_ptr>>
channel_history::after(uint64_t offset, const tag_filter_ptr& filter) const {
  if (offset > last_)
    return std::nullopt;
  std::vector<frame_ptr> result;
  if (offset == last_)
    return result;
  // Every publication after `offset` must still be here.
  if (entries_.empty() || entries_.front().offset > offset + 1)
    return std::nullopt;
  auto first = offset + 1 - entries_.front().offset;
  if (!filter)
    result.reserve(entries_.size() - first);
  for (auto i = first; i < entries_.size(); ++i)
    if (entries_[i].passes(filter))
      result.push_back(entries_[i].frame);
  return result;
}

std::vector<frame_ptr>
channel_history::last(size_t n, const tag_filter_ptr& filter) const {
  std::vector<frame_ptr> result;
  if (!filter) {
    n = std::min(n, entries_.size());
    result.reserve(n);
    for (auto i = entries_.size() - n; i < entries_.size(); ++i)
      result.push_back(entries_[i].frame);
    return result;
  }
  // The last n that pass, found from the newest back.
  for (auto i = entries_.rbegin(); i != entries_.rend() && result.size() < n;
       ++i)
    if (i->passes(filter))
      result.push_back(i->frame);
  std::reverse(result.begin(), result.end());
  return result;
}

void channel_history::expire(clock_type::time_point cutoff) {
  while (!entries_.empty() && entries_.front().stored < cutoff)
    entries_.pop_front();
}

} // namespace livehub

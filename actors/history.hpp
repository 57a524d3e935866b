// history: the recent publications of one history channel, with their
// offsets and the stream's epoch. Publications of the channel are ordered
// under its lock (see deliver_publication): offsets are assigned, frames
// stored and delivered there, and a subscribe that recovers snapshots the
// history and joins the fanout there too, so nothing is missed or doubled.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "livehub/filter.hpp"
#include "livehub/fwd.hpp"

namespace livehub {

class channel_history {
 public:
  using clock_type = std::chrono::steady_clock;

  /// A new, empty stream with a fresh random epoch.
  channel_history();

  /// Orders the channel's publications (see the file comment).
  std::mutex mtx;

  // Everything below needs `mtx`.

  /// The stream's epoch: a short random string, new for each stream.
  const std::string& epoch() const {
    return epoch_;
  }

  /// The offset of the last publication (0: none yet).
  uint64_t last_offset() const {
    return last_;
  }

  /// The offset the next publication gets.
  uint64_t next_offset() const {
    return last_ + 1;
  }

  /// Stores the frame of the publication with offset next_offset() and its
  /// tags, keeping at most `max_size` publications.
  void append(frame_ptr frame, const tag_map& tags, clock_type::time_point now,
              size_t max_size);

  /// The publications after `offset` that pass `filter` (null: all), oldest
  /// first; none when some publications after `offset` are no longer stored
  /// (then a client cannot recover from `offset`).
  std::optional<std::vector<frame_ptr>>
  after(uint64_t offset, const tag_filter_ptr& filter = nullptr) const;

  /// The last `n` publications that pass `filter` (null: all), oldest first.
  std::vector<frame_ptr> last(size_t n,
                              const tag_filter_ptr& filter = nullptr) const;

  /// Drops publications stored before `cutoff`.
  void expire(clock_type::time_point cutoff);

  /// Publications stored.
  size_t size() const {
    return entries_.size();
  }

 private:
  struct entry {
    uint64_t offset;
    clock_type::time_point stored;
    frame_ptr frame;
    /// Null when the publication had no tags.
    std::shared_ptr<const tag_map> tags;

    bool passes(const tag_filter_ptr& filter) const;
  };

  std::string epoch_;
  uint64_t last_ = 0;
  std::deque<entry> entries_;
};

using history_ptr = std::shared_ptr<channel_history>;

} // namespace livehub

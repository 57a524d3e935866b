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
#include "livehub/messages.hpp"

namespace livehub {

/// A new random epoch: 8 characters of [0-9a-z].
std::string new_epoch();

class channel_history {
 public:
  using clock_type = std::chrono::steady_clock;

  /// A new, empty stream with a fresh random epoch; a mirror (not live yet)
  /// when `mirror`.
  explicit channel_history(bool mirror = false);

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

  // -- a mirror of a stream the broker keeps (several nodes) ---------------

  /// A publication that reached a mirror while it was loading.
  struct pending_entry {
    /// With its offset.
    publication pub;
    frame_ptr frame;
    std::string epoch;
  };

  /// Whether this history is the stream itself or an up-to-date mirror of
  /// the broker's: then it answers subscribes, recoveries and history
  /// reads. A mirror is not live until loaded (install), and again from a
  /// break in the offsets it receives until reloaded.
  bool live = true;

  /// Publications received while not live, in order.
  std::vector<pending_entry> pending;

  /// Empties the history and makes it the stream `epoch` with its last
  /// publication at `offset` (nothing stored).
  void reset(std::string epoch, uint64_t offset);

  /// Stores the frame of the publication with offset `offset` (stored at
  /// `stored`): after reset() and for loading.
  void append_at(uint64_t offset, frame_ptr frame, const tag_map& tags,
                 clock_type::time_point stored, size_t max_size);

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

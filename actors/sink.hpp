// sink: the outgoing side of a connection, as livehub's actors (client,
// hub, keepalive) and every channel's fanout use it. The transport implements
// it over websocketpp; tests use a fake.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "livehub/fwd.hpp"

namespace livehub {

/// Within its scope, sinks on this thread may hold back waking the threads
/// that write their frames until the scope ends: one fan-out's frames then
/// reach each I/O thread as one batch, with one wake-up, and every frame a
/// connection got meanwhile leaves in one gathered write, instead of the
/// writer waking for the first few sinks and writing a thin slice. A scope
/// inside another ends with the outer one. Not copyable; stack only.
class send_batch {
 public:
  /// Wakes the writer identified by its argument.
  using wake_fn = void (*)(void*);

  send_batch();
  ~send_batch();
  send_batch(const send_batch&) = delete;
  send_batch& operator=(const send_batch&) = delete;

  /// For sink implementations: when a batch is open on this thread, records
  /// `wake(arg)` to be called once when it ends and returns true; otherwise
  /// returns false and the caller wakes its writer now.
  static bool defer(wake_fn wake, void* arg);
};

/// The outgoing side of one connection, with its bounded send queue.
///
/// Thread-safe: whoever publishes (the hub, or a client actor through the
/// route table) hands frames to every subscriber's sink from its own thread
/// (see fanout), so the send-queue policy lives here, under one lock, with
/// an explicit outcome for every frame.
class sink {
 public:
  /// The outcome of one send.
  enum class result {
    /// Handed to the connection.
    queued,
    /// Refused: the queue limit was reached, and this call closed the
    /// connection with 4008 (returned once per connection, so callers can
    /// count slow consumers exactly).
    slow_consumer,
    /// Refused: the connection is closed or closing.
    closed,
    /// Refused (send_history only): the queue is over its limit; the
    /// connection stays open and the caller marks the channel lagging.
    lagging,
  };

  /// Progress of the writes, for the write timeout.
  struct progress {
    /// Payload bytes handed to the connection so far.
    uint64_t sent = 0;
    /// Payload bytes still waiting to be written.
    uint64_t queued = 0;
  };

  /// Close code for a slow consumer (send queue limit or write timeout).
  static constexpr uint16_t slow_consumer_code = 4008;
  /// Close code for a connection without a valid token.
  static constexpr uint16_t unauthorized_code = 4001;
  /// Close code for a connection whose token expired.
  static constexpr uint16_t token_expired_code = 4002;
  /// Close code for a connection that keeps exceeding its command rate.
  static constexpr uint16_t rate_limited_code = 4029;

  /// When the connection must be closed unless something changes it (no
  /// connect in time, a token's expiry), and with which code.
  struct deadline {
    /// On the actor clock; meaningful only when `code` is not 0.
    std::chrono::steady_clock::time_point when;
    /// 0: none.
    uint16_t code = 0;
  };

  sink(size_t max_frames, size_t max_bytes);

  virtual ~sink();

  sink(const sink&) = delete;
  sink& operator=(const sink&) = delete;

  using time_point = std::chrono::steady_clock::time_point;

  /// Queues `frame` as one text frame, unless the connection is closed or its
  /// queue is full (then closes it with 4008 `slow consumer`). `accepted`:
  /// when the publication it carries began its delivery (for the
  /// delivery-latency histogram); none for replies.
  result send(const frame_ptr& frame, time_point accepted = {});

  /// Queues a publication of a history channel: as send(), except that over
  /// the limit it returns `lagging` instead of closing the connection.
  result send_history(const frame_ptr& frame, time_point accepted);

  /// Queues a reply, error, pong or gap frame: only send-queue-bytes bounds
  /// these (the frame limit counts publications).
  result send_reply(const frame_ptr& frame);

  /// Once the queue is back under half its limits, sends `gap` (a gap
  /// frame, see fanout) unless a gap for `channel` is already waiting; at
  /// once when it already is.
  void add_gap(const std::string& channel, frame_ptr gap);

  /// Forgets a waiting gap of `channel` (it subscribed again).
  void drop_gap(const std::string& channel);

  /// True while gap frames wait for the queue to drain (lock-free): the
  /// transport then calls flush_gaps() after each completed write, so they
  /// go out as soon as they may rather than at the next keepalive sweep.
  bool gaps_waiting() const {
    return gaps_waiting_.load(std::memory_order_relaxed);
  }

  /// Sends the waiting gap frames if the queue drained enough.
  void flush_gaps();

  /// Closes the connection with `code` and `reason` (once; later calls and
  /// sends do nothing).
  void close(uint16_t code, const std::string& reason);

  /// Sends a WebSocket ping (nothing once closed).
  void ping();

  /// The transport saw a pong (thread-safe, lock-free).
  void pong_received() {
    pong_seen_.store(true, std::memory_order_relaxed);
  }

  /// True if a pong arrived since the last call.
  bool take_pong() {
    return pong_seen_.exchange(false, std::memory_order_relaxed);
  }

  /// Write progress (see progress).
  progress write_progress();

  /// Sets (or, with code 0, clears) the connection's deadline. The client
  /// actor sets it; the keepalive sweep enforces it.
  void set_deadline(deadline x);

  /// The connection's deadline.
  deadline get_deadline();

  /// True once closed by us or by the transport.
  bool closed();

  /// Frames currently queued (after the last send or write_progress).
  size_t queued_frames();

  /// Marks the sink closed and detaches it from its connection (the
  /// transport saw the connection end, or shuts down). After it returns no
  /// do_* function runs again.
  void detach();

  /// The client actor finished processing one incoming message; the
  /// transport uses it to bound the commands waiting in the actor's mailbox.
  void consumed();

 protected:
  /// Writes `frame`; false when the connection is already gone. Called with
  /// the sink's lock held. `accepted`: see send().
  virtual bool do_send(const frame_ptr& frame, time_point accepted) = 0;

  /// Payload bytes written so far (or at least gone from the connection's
  /// queue), out of those handed to do_send. May lag behind; never runs
  /// ahead.
  virtual uint64_t do_written() = 0;

  /// Starts the closing handshake.
  virtual void do_close(uint16_t code, const std::string& reason) = 0;

  /// Sends a ping frame.
  virtual void do_ping() = 0;

  /// See consumed(). Called with the lock held, only while not detached.
  virtual void do_consumed() {
    // nop
  }

  /// Lets go of the connection. Called with the lock held, once.
  virtual void do_detach() {
    // nop
  }

 private:
  /// Drops the frames written since the last call and returns the bytes
  /// still queued; sends the waiting gap frames once the queue is under half
  /// its limits. Needs the lock.
  uint64_t update_queue();

  /// Queues `frame` for the connection; false when it is gone (then closed).
  /// Needs the lock.
  bool queue(const frame_ptr& frame, time_point accepted);

  /// Gap frames waiting for the queue to drain, by channel.
  std::vector<std::pair<std::string, frame_ptr>> gaps_;
  std::atomic<bool> gaps_waiting_{false};

  std::mutex mtx_;
  size_t max_frames_;
  size_t max_bytes_;
  bool closed_ = false;
  bool detached_ = false;
  deadline deadline_;
  std::atomic<bool> pong_seen_{false};
  uint64_t total_ = 0;
  /// End offset (in `total_`) of each frame not yet written, oldest first,
  /// from `head_` on. A vector rather than a deque: an idle connection's
  /// empty queue allocates nothing (a deque allocates 512 bytes up front).
  std::vector<uint64_t> ends_;
  size_t head_ = 0;

  size_t queue_size() const {
    return ends_.size() - head_;
  }

  void queue_push(uint64_t end);

  /// Empties the queue and frees its memory (an idle connection holds
  /// none).
  void queue_clear() {
    std::vector<uint64_t>{}.swap(ends_);
    head_ = 0;
  }
};

} // namespace livehub

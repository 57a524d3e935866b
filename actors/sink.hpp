// sink: what a client actor (and a channel's fast lane) needs of its
// connection. The transport implements it over websocketpp; tests use a fake.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include "livehub/fwd.hpp"

namespace livehub {

/// The outgoing side of one connection, with its bounded send queue.
///
/// Thread-safe: channels hand frames straight to a subscriber's sink from
/// their own threads (the "fast lane"), so the send-queue policy lives here,
/// under one lock, with an explicit outcome for every frame.
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

  sink(size_t max_frames, size_t max_bytes);

  virtual ~sink();

  sink(const sink&) = delete;
  sink& operator=(const sink&) = delete;

  /// Queues `frame` as one text frame, unless the connection is closed or its
  /// queue is full (then closes it with 4008 `slow consumer`).
  result send(const frame_ptr& frame);

  /// Closes the connection with `code` and `reason` (once; later calls and
  /// sends do nothing).
  void close(uint16_t code, const std::string& reason);

  /// Sends a WebSocket ping (nothing once closed).
  void ping();

  /// Write progress (see progress).
  progress write_progress();

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
  /// the sink's lock held.
  virtual bool do_send(const frame_ptr& frame) = 0;

  /// Payload bytes the connection still has queued.
  virtual size_t do_buffered_amount() = 0;

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
  /// still queued. Needs the lock.
  uint64_t update_queue();

  std::mutex mtx_;
  size_t max_frames_;
  size_t max_bytes_;
  bool closed_ = false;
  bool detached_ = false;
  uint64_t total_ = 0;
  /// End offset (in `total_`) of each frame not yet written, oldest first.
  std::deque<uint64_t> ends_;
};

} // namespace livehub

// hiredis' asynchronous API on an asio::io_context: what hiredis ships for
// libevent, libuv and others (hiredis/adapters/), written for Asio.
//
// hiredis drives a redisAsyncContext through five hooks in `ac->ev`: addRead,
// delRead, addWrite and delWrite say whether it wants to hear of its socket
// becoming readable or writable; cleanup says the context is being freed.
// The adapter turns each wish into an `async_wait` on a
// `posix::stream_descriptor` that watches the context's socket, and calls
// redisAsyncHandleRead / redisAsyncHandleWrite when the socket is ready.
//
// Lifetime rules, each the answer to a classic fault of such adapters:
//  - hiredis owns the socket. The descriptor only watches it: cleanup calls
//    release() (which also takes it out of epoll and aborts the waits), never
//    close(), so the fd is closed once, by hiredis' redisFree().
//  - hiredis holds the adapter from attach() to cleanup (a shared_ptr of the
//    adapter to itself, dropped in cleanup), and every wait in flight holds
//    it too. A wait that completes after cleanup (release() aborts the waits,
//    but a completion may already be queued) finds no context and returns.
//  - redisAsyncHandleRead/Write may free the context inside the call (an I/O
//    error, or redisAsyncFree() called from a reply callback). The adapter
//    hears it in cleanup, which runs inside that call, and re-arms nothing
//    afterwards.
//  - hiredis still calls the context's callbacks after cleanup (onDisconnect
//    comes last). So the `guard` given to attach() — whatever `ac->data`
//    points to — is held while hiredis holds the adapter, and, through a
//    local copy, for the whole of each call into hiredis.
//  - waits are one-shot. The add hooks are idempotent (one wait per
//    direction at a time); a completed wait is passed to hiredis only if it
//    still wants that direction, and hiredis asks again (addRead after every
//    read, addWrite while output remains) from inside the call.
//  - the connect phase: hiredis 0.14 connects without blocking and learns
//    the outcome from the first write readiness (redisAsyncSetConnectCallback
//    and every command call addWrite); the adapter needs nothing special.
//  - SIGPIPE: hiredis 0.14 writes with write(2), not send() with
//    MSG_NOSIGNAL, and has no hook for its I/O. A write to a connection the
//    server reset raises SIGPIPE, which ends a host process that does not
//    ignore it (livehub's own sockets never raise it). So writes run with
//    SIGPIPE blocked on the thread, and a SIGPIPE they raised is taken off
//    before the old mask returns: hiredis sees EPIPE, nothing else does.
//    Three system calls per write readiness, not per command (hiredis
//    writes all it has queued at once).
//
// One thread: the io_context's. Internal to redis.cpp.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <ctime>
#include <functional>
#include <memory>
#include <system_error>
#include <utility>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>

#include <hiredis/async.h>

namespace livehub::redis::detail {

class asio_events : public std::enable_shared_from_this<asio_events> {
 public:
  /// Attaches `ac` to `io`: from now on hiredis' reads and writes happen in
  /// `io`'s handlers. Keeps `guard` alive as described above and calls
  /// `on_cleanup` (if set) when hiredis frees the context, inside that free,
  /// while `ac` is still valid. False, with `ac` untouched, when `ac`
  /// already has an event library or its socket cannot be watched (`ec`).
  static bool attach(redisAsyncContext* ac, asio::io_context& io,
                     std::shared_ptr<void> guard,
                     std::function<void()> on_cleanup, std::error_code& ec) {
    if (ac->ev.data != nullptr) {
      ec = std::make_error_code(std::errc::device_or_resource_busy);
      return false;
    }
    auto events = std::make_shared<asio_events>(io, ac, std::move(guard),
                                                std::move(on_cleanup));
    events->socket_.assign(ac->c.fd, ec);
    if (ec)
      return false; // `events` goes; the descriptor never owned the fd
    events->self_ = events;
    ac->ev.data = events.get();
    ac->ev.addRead = &asio_events::add_read;
    ac->ev.delRead = &asio_events::del_read;
    ac->ev.addWrite = &asio_events::add_write;
    ac->ev.delWrite = &asio_events::del_write;
    ac->ev.cleanup = &asio_events::cleanup;
    return true;
  }

  /// For make_shared only; use attach().
  asio_events(asio::io_context& io, redisAsyncContext* ac,
              std::shared_ptr<void> guard, std::function<void()> on_cleanup)
    : ac_(ac), socket_(io), guard_(std::move(guard)),
      on_cleanup_(std::move(on_cleanup)) {
    // nop
  }

  asio_events(const asio_events&) = delete;
  asio_events& operator=(const asio_events&) = delete;

 private:
  enum direction { reading, writing };

  static asio_events& self(void* privdata) {
    return *static_cast<asio_events*>(privdata);
  }

  static void add_read(void* privdata) {
    self(privdata).want(reading, true);
  }

  static void del_read(void* privdata) {
    self(privdata).want(reading, false);
  }

  static void add_write(void* privdata) {
    self(privdata).want(writing, true);
  }

  static void del_write(void* privdata) {
    self(privdata).want(writing, false);
  }

  static void cleanup(void* privdata) {
    auto& events = self(privdata);
    // hiredis lets go of the adapter: keep it alive to the end of this call.
    auto keep = std::move(events.self_);
    events.detach();
  }

  // A wish of hiredis. Dropping a wish leaves a wait in flight alone: its
  // completion is then ignored (Asio cannot cancel one direction only).
  void want(direction d, bool on) {
    wanted_[d] = on;
    if (on)
      arm(d);
  }

  void arm(direction d) {
    if (armed_[d] || ac_ == nullptr)
      return;
    armed_[d] = true;
    auto w = d == reading ? asio::posix::stream_descriptor::wait_read
                          : asio::posix::stream_descriptor::wait_write;
    socket_.async_wait(
      w, [self = shared_from_this(), d](const std::error_code& ec) {
        self->ready(d, ec);
      });
  }

  void ready(direction d, const std::error_code& ec) {
    armed_[d] = false;
    if (ec == asio::error::operation_aborted || ac_ == nullptr || !wanted_[d])
      return;
    // Any other error is for hiredis to find on the socket. The call may
    // free the context (cleanup() then clears ac_) and run callbacks after
    // that: `guard` keeps their target alive, `self` this adapter.
    auto guard = guard_;
    auto self = shared_from_this();
    if (d == reading)
      redisAsyncHandleRead(ac_);
    else
      write_without_sigpipe(ac_);
    // hiredis re-armed through the add hooks what it still wants.
  }

  static void write_without_sigpipe(redisAsyncContext* ac) {
    sigset_t pipe_only;
    sigset_t before;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &before);
    redisAsyncHandleWrite(ac);
    if (sigismember(&before, SIGPIPE))
      return; // blocked already: whoever blocked it deals with it
    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
      timespec now{0, 0};
      sigtimedwait(&pipe_only, nullptr, &now);
    }
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
  }

  void detach() {
    // hiredis calls no hook after cleanup; make sure of it all the same.
    ac_->ev = {};
    ac_ = nullptr;
    wanted_[reading] = wanted_[writing] = false;
    socket_.release(); // not close(): redisFree() closes the fd
    // The guard goes when this call returns, after on_cleanup. (Whoever
    // called into hiredis holds the guard's target for longer.)
    auto guard = std::move(guard_);
    if (auto f = std::move(on_cleanup_))
      f();
  }

  redisAsyncContext* ac_;
  asio::posix::stream_descriptor socket_;
  bool wanted_[2] = {false, false};
  bool armed_[2] = {false, false};
  std::shared_ptr<void> guard_;
  std::function<void()> on_cleanup_;
  /// hiredis' reference, from attach() to cleanup.
  std::shared_ptr<asio_events> self_;
};

} // namespace livehub::redis::detail

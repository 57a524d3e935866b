// livehub's own websocketpp transport policy: TCP, or TLS over TCP, on
// standalone Asio, server side only, shaped for tens of thousands of mostly
// idle connections.
//
// websocketpp takes its transport as a template parameter of the config
// (`config::transport_type`); this is one, written against the interface its
// connection and endpoint call (websocketpp/transport/base/). Compared with
// websocketpp's asio transport it
//  - keeps no per-connection handler allocators (2 x 1,040 bytes inside every
//    connection object; Asio recycles handler memory per thread anyway), no
//    buffer vector, no socket on the heap, no strand and no copied init
//    handlers;
//  - reads each socket through one 16 KiB buffer per thread, so a busy
//    connection reads many frames per system call while websocketpp's own
//    per-connection read buffer stays small;
//  - runs several single-threaded io_contexts instead of one shared one:
//    each connection belongs to one context, so websocketpp's
//    `concurrency::none` is safe and nothing per connection locks;
//  - backs off when accept fails for lack of file descriptors instead of
//    retrying in a busy loop;
//  - tells an observer when a write completed (livehub's send accounting);
//  - has a fast lane for data frames (queue_frame): a server frame is the
//    same bytes for every subscriber, so livehub prepares each publication's
//    frame once and every connection queues that shared buffer, with no
//    websocketpp message, handler or send-queue entry per delivery. One
//    ordered queue per connection takes both these frames and websocketpp's
//    own writes (handshake, pings, pongs, close), so nothing interleaves;
//    each write gathers everything pending for the connection, and is
//    offered to the socket at once, as an epoll loop would, Asio waiting
//    only for what the socket did not take;
//  - knows every connection it made, so that a server that stops can abort
//    the sockets its close handshakes did not end in time (websocketpp's
//    transport leaves them open until the last reference to each goes);
//  - keeps an HTTP connection's socket for its next request (HTTP/1.1
//    keep-alive) where livehub asks for it: websocketpp reads one request per
//    connection and closes after a plain HTTP response, dropping whatever it
//    read beyond the request. Here, until a request is complete, websocketpp
//    is handed no byte past its end (the head up to its blank line, then as
//    much body as websocketpp's own parse of Content-Length still expects),
//    so pipelined requests wait in the transport; once the response is
//    written, a fresh websocketpp connection adopts the socket and those
//    bytes and reads the next request as if the socket were just accepted.
//    An idle kept socket costs that connection object and waits at most an
//    idle timeout for its next request's first byte;
//  - speaks TLS or plain TCP as the endpoint was told at run time, with one
//    websocketpp config (a second server type would double the compile
//    time). With TLS, OpenSSL works the non-blocking socket directly (see
//    tls.hpp): the handshake runs inside the first read, which websocketpp
//    starts together with its open-handshake timer, so a silent or garbage
//    ClientHello costs at most that timeout; reads keep the speculative
//    pattern (OpenSSL is always asked before the socket is waited for, so
//    input OpenSSL buffered is never stranded); writes gather websocketpp's
//    buffers into one run of records; shutdown sends close_notify only if
//    the socket takes it at once.
//
// Internal to livehub::transport; endpoint.hpp builds its config on it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <websocketpp/common/asio.hpp>
#include <websocketpp/common/connection_hdl.hpp>
#include <websocketpp/error.hpp>
#include <websocketpp/transport/base/connection.hpp>
#include <websocketpp/transport/base/endpoint.hpp>

#include "transport/tls.hpp"

namespace livehub::transport::lean {

namespace wtp = websocketpp::transport;
using websocketpp::lib::error_code;

/// A complete server frame, header and payload (see
/// connection::queue_frame).
using shared_bytes = std::shared_ptr<const std::string>;

/// Told on the connection's I/O thread after each completed write.
class write_observer {
 public:
  virtual ~write_observer() = default;
  virtual void on_written() = 0;
};

/// websocketpp's buffer list as an Asio buffer sequence, without copying it
/// (websocketpp keeps the list alive until the write completes).
class buffer_list {
 public:
  using source = std::vector<wtp::buffer>;

  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = asio::const_buffer;
    using difference_type = std::ptrdiff_t;
    using pointer = const asio::const_buffer*;
    using reference = asio::const_buffer;

    const_iterator() = default;

    explicit const_iterator(source::const_iterator pos) : pos_(pos) {
      // nop
    }

    asio::const_buffer operator*() const {
      return asio::const_buffer{pos_->buf, pos_->len};
    }

    const_iterator& operator++() {
      ++pos_;
      return *this;
    }

    const_iterator operator++(int) {
      auto result = *this;
      ++pos_;
      return result;
    }

    bool operator==(const const_iterator& other) const {
      return pos_ == other.pos_;
    }

    bool operator!=(const const_iterator& other) const {
      return pos_ != other.pos_;
    }

   private:
    source::const_iterator pos_;
  };

  explicit buffer_list(const source& bufs) : bufs_(&bufs) {
    // nop
  }

  const_iterator begin() const {
    return const_iterator{bufs_->begin()};
  }

  const_iterator end() const {
    return const_iterator{bufs_->end()};
  }

 private:
  const source* bufs_;
};

template<class config>
class endpoint;

/// Every live connection of an endpoint, by the address of its socket, so
/// that abort_all() can reach sockets nobody else would close. Shared by the
/// endpoint and its connections: a connection that outlives its endpoint
/// still unregisters safely.
class socket_registry {
 public:
  void add(asio::ip::tcp::socket* sock) {
    std::unique_lock<std::mutex> guard{mtx_};
    if (!aborted_)
      live_.insert(sock);
  }

  void remove(asio::ip::tcp::socket* sock) {
    std::unique_lock<std::mutex> guard{mtx_};
    live_.erase(sock);
  }

  /// True when sockets may be kept between HTTP requests: a way to start
  /// the adopting connections is set, and abort_all() did not run.
  bool keeps_sockets() {
    std::unique_lock<std::mutex> guard{mtx_};
    return !aborted_ && static_cast<bool>(start_adopting);
  }

  // -- HTTP keep-alive: set before listening, then only read ---------------

  /// Makes and starts a websocketpp connection, which adopts the socket of
  /// the connection ending on the calling thread (see
  /// connection::async_shutdown). Set by the endpoint's owner: only
  /// websocketpp's server makes its connections. Empty: every socket closes
  /// after its HTTP response.
  std::function<void()> start_adopting;

  /// How long a kept socket waits for the first byte of its next request.
  std::chrono::milliseconds idle_timeout{5000};

  /// Closes every registered socket at once (a TCP reset, dropping unsent
  /// data) and forgets them; returns how many. Only while no thread runs the
  /// sockets' io_contexts.
  size_t abort_all() {
    std::unique_lock<std::mutex> guard{mtx_};
    aborted_ = true;
    auto n = live_.size();
    for (auto* sock : live_) {
      asio::error_code ignored;
      sock->set_option(asio::socket_base::linger{true, 0}, ignored);
      sock->close(ignored);
    }
    live_.clear();
    return n;
  }

 private:
  std::mutex mtx_;
  std::unordered_set<asio::ip::tcp::socket*> live_;
  bool aborted_ = false;
};

/// The transport half of one websocketpp connection (websocketpp makes it a
/// base class of its connection). Every function runs on the connection's
/// own I/O thread, except dispatch() and interrupt(), which post to it.
template<class config>
class connection : public std::enable_shared_from_this<connection<config>> {
 public:
  using type = connection<config>;
  using ptr = std::shared_ptr<type>;
  using alog_type = typename config::alog_type;
  using elog_type = typename config::elog_type;
  using timer_ptr = std::shared_ptr<asio::steady_timer>;

  connection(bool /* is_server */, const std::shared_ptr<alog_type>&,
             const std::shared_ptr<elog_type>&)
    : phase_(before_head), matched_(0), keep_(false), answered_(false),
      write_busy_(false), flush_wanted_(false), write_failed_(false) {
    // nop
  }

  ~connection() {
    // Runs before socket_ goes: abort_all() never sees a destroyed socket.
    // (No socket: another connection adopted it.)
    if (registry_ && socket_)
      registry_->remove(&*socket_);
  }

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  ptr get_shared() {
    return this->shared_from_this();
  }

  bool is_secure() const {
    return static_cast<bool>(tls_);
  }

  /// The peer as "address:port" (websocketpp logs it), "Unknown" if unknown.
  std::string get_remote_endpoint() const {
    if (!socket_)
      return "Unknown";
    asio::error_code ec;
    auto peer = socket_->remote_endpoint(ec);
    if (ec)
      return "Unknown";
    auto addr = peer.address().to_string();
    if (peer.address().is_v6())
      addr = "[" + addr + "]";
    return addr + ":" + std::to_string(peer.port());
  }

  /// The TCP socket (exists once the endpoint initialised the connection).
  asio::ip::tcp::socket& socket() {
    return *socket_;
  }

  /// The io_context this connection runs on.
  asio::io_context& context() {
    return *ctx_;
  }

  /// Index of context() among the endpoint's contexts.
  size_t context_index() const {
    return ctx_index_;
  }

  /// Sets (or clears, with nullptr) the observer of completed writes.
  void set_write_observer(write_observer* obs) {
    observer_ = obs;
  }

  /// The fast lane: queues `bytes` behind everything this connection wrote or
  /// queued before, websocketpp's own writes included, so frames never
  /// interleave and keep their order. websocketpp builds nothing for it.
  /// `counted` stays in queued_bytes() until the frame is written. True when
  /// the caller must call flush() once it queued what it has for this
  /// connection now: all of it then leaves in one gathered write. Frames
  /// queued after a failed write are dropped (the connection is ending).
  bool queue_frame(shared_bytes bytes, size_t counted) {
    if (write_failed_)
      return false;
    queued_.push_back(out_frame{std::move(bytes), counted});
    queued_bytes_ += counted;
    if (write_busy_ || flush_wanted_)
      return false;
    flush_wanted_ = true;
    return true;
  }

  /// Writes the queued frames, unless a write is in flight: its completion
  /// writes them.
  void flush() {
    flush_wanted_ = false;
    if (!write_busy_ && !queued_.empty())
      start_write(queued_.size(), nullptr, 0, nullptr);
  }

  /// The `counted` bytes of the fast-lane frames queued or being written.
  size_t queued_bytes() const {
    return queued_bytes_;
  }

  /// HTTP requests this socket carried before the current one: 0 on a
  /// socket just accepted, one more on each connection that adopts it.
  uint32_t requests_before() const {
    return served_;
  }

  /// Asks to keep the socket for another request once the response to the
  /// current plain HTTP request is written whole (never meant for WebSocket
  /// upgrades). False by default: the socket closes after the response.
  void keep_alive(bool keep) {
    keep_ = keep;
  }

  /// What keep_alive() set.
  bool keeps_alive() const {
    return keep_;
  }

  /// Calls `callback` after `duration` milliseconds, or with
  /// operation_aborted when the returned timer is cancelled first.
  timer_ptr set_timer(long duration, wtp::timer_handler callback) {
    auto timer = std::make_shared<asio::steady_timer>(
      *ctx_, std::chrono::milliseconds(duration));
    timer->async_wait([self = get_shared(), timer,
                       cb = std::move(callback)](const asio::error_code& ec) {
      if (ec == asio::error::operation_aborted)
        cb(wtp::error::make_error_code(wtp::error::operation_aborted));
      else if (ec)
        cb(wtp::error::make_error_code(wtp::error::pass_through));
      else
        cb(error_code{});
    });
    return timer;
  }

 protected:
  /// websocketpp keeps its own handle; the transport needs none.
  void set_handle(websocketpp::connection_hdl) {
    // nop
  }

  /// Starts the connection, on its own thread: accept ran on the acceptor's.
  /// A kept socket (see async_shutdown) starts once its next request
  /// begins: websocketpp's open-handshake timeout then bounds reading that
  /// request, as for a new connection, while the idle timeout bounds the
  /// wait before it.
  void init(wtp::init_handler callback) {
    if (served_ > 0 && spilled() == 0 && !(tls_ && tls_.has_pending())) {
      await_request(std::move(callback));
      return;
    }
    asio::post(*ctx_, [cb = std::move(callback)] {
      cb(error_code{});
    });
  }

  /// Reads at least `num_bytes` (at most `len`) into `buf`. Reads from the
  /// socket go through one buffer per thread (see read_chunk), so an idle
  /// connection holds no read buffer beyond websocketpp's small one, and a
  /// busy one still reads many frames per system call.
  void async_read_at_least(size_t num_bytes, char* buf, size_t len,
                           wtp::read_handler handler) {
    if (phase_ == before_head && spilled() > 0) {
      spill_pos_ += skip_empty_lines(spill_.data() + spill_pos_, spilled());
      if (spilled() == 0)
        release_spill();
    }
    if (spilled() >= num_bytes) {
      // Served from memory; posted, so a long run of buffered frames does
      // not recurse through websocketpp's read loop.
      auto n = take_spill(buf, len);
      asio::post(*ctx_, [self = get_shared(), h = std::move(handler), n] {
        h(error_code{}, n);
      });
      return;
    }
    // Try the socket first (posted, like the spill): data is often there
    // already. readable() waits for the reactor only when it is not.
    asio::post(*ctx_,
               [self = get_shared(), num_bytes, buf, len,
                h = std::move(handler)] {
                 self->readable({}, num_bytes, buf, len, h);
               });
  }

  /// websocketpp's writes (the handshake response, control frames, its own
  /// messages) join the same ordered queue as the fast lane's frames: they
  /// start at once when no write is in flight, and otherwise wait behind it
  /// and the frames queued before them (see write_or_hold()).
  void async_write(const char* buf, size_t len, wtp::write_handler handler) {
    wtp::buffer one{buf, len};
    write_or_hold(&one, 1, std::move(handler));
  }

  void async_write(const std::vector<wtp::buffer>& bufs,
                   wtp::write_handler handler) {
    write_or_hold(bufs.data(), bufs.size(), std::move(handler));
  }

  error_code interrupt(wtp::interrupt_handler handler) {
    asio::post(*ctx_, std::move(handler));
    return {};
  }

  error_code dispatch(wtp::dispatch_handler handler) {
    asio::post(*ctx_, std::move(handler));
    return {};
  }

  /// Shuts the socket down both ways (the descriptor closes with the
  /// connection object), after a TLS close_notify where the socket takes it
  /// at once: a peer that does not read cannot hold the shutdown up.
  ///
  /// websocketpp calls this after every plain HTTP response. Where the
  /// request asked to keep the socket (keep_alive()) and the response went
  /// out whole, a fresh websocketpp connection adopts the socket instead,
  /// with the bytes read beyond the request (see endpoint::init and
  /// adopt()), and this one ends as if it had closed.
  void async_shutdown(wtp::shutdown_handler callback) {
    if (keep_ && answered_ && registry_->keeps_sockets()) {
      {
        handover offer{this};
        registry_->start_adopting();
      }
      if (!socket_) {
        callback(error_code{});
        return;
      }
      // Not adopted (no connection could be made): close after all.
    }
    if (tls_)
      tls_.close_notify();
    asio::error_code ec;
    socket_->shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    if (ec == asio::error::not_connected)
      ec = {};
    callback(ec);
  }

 private:
  friend class endpoint<config>;

  /// Bytes read from the socket, not yet handed to websocketpp.
  size_t spilled() const {
    return spill_.size() - spill_pos_;
  }

  /// Moves up to `len` spilled bytes to `buf` (no more than admit()
  /// allows); frees the spill when empty.
  size_t take_spill(char* buf, size_t len) {
    auto n = admit(spill_.data() + spill_pos_, std::min(len, spilled()));
    std::memcpy(buf, spill_.data() + spill_pos_, n);
    spill_pos_ += n;
    if (spill_pos_ == spill_.size())
      release_spill();
    return n;
  }

  /// Frees the spill's memory once all of it was taken.
  void release_spill() {
    std::vector<char>{}.swap(spill_);
    spill_pos_ = 0;
  }

  // -- HTTP keep-alive -------------------------------------------------------

  /// Where reading stands in the connection's request. websocketpp reads one
  /// request per connection, and after a plain HTTP response drops what it
  /// was handed beyond the request; so until the request is complete it
  /// gets no byte past the request's end, and the rest stays in spill_ for
  /// the connection that adopts the socket.
  enum phase {
    before_head,   ///< nothing of the request read yet
    in_head,       ///< before the blank line that ends the head
    in_body,       ///< after it: websocketpp may still read a body
    after_request, ///< the request is complete: WebSocket frames follow
  };

  /// Drops the empty lines (CR and LF bytes) that may come before a request
  /// from the front of the `n` bytes at `data`, the next ones of the stream,
  /// and returns how many it dropped: RFC 9112 (section 2.2) asks a server to
  /// ignore them, since some clients end a body with an extra CRLF, which on
  /// a kept connection precedes the next request. websocketpp would answer
  /// them with 400.
  size_t skip_empty_lines(const char* data, size_t n) {
    if (phase_ != before_head)
      return 0;
    size_t i = 0;
    while (i < n && (data[i] == '\r' || data[i] == '\n'))
      ++i;
    if (i < n)
      phase_ = in_head;
    return i;
  }

  /// How many of the `n` bytes at `data`, the next ones of the stream,
  /// websocketpp may take now (at least one of them); advances the phase
  /// past them.
  size_t admit(const char* data, size_t n) {
    switch (phase_) {
      case before_head: // (skip_empty_lines() dropped what it drops)
        phase_ = in_head;
        [[fallthrough]];
      case in_head:
        // The head ends at the first CRLF CRLF, where websocketpp's parser
        // (line by line, at each CRLF) finds its first empty line.
        for (size_t i = 0; i < n; ++i) {
          auto c = data[i];
          matched_ = c == "\r\n\r\n"[matched_] ? matched_ + 1
                                               : (c == '\r' ? 1 : 0);
          if (matched_ == 4) {
            phase_ = in_body;
            return i + 1;
          }
        }
        return n;
      case in_body:
        if (auto left = config::request_body_left(*this); left > 0)
          return std::min(n, left);
        phase_ = after_request;
        return n;
      default: return n;
    }
  }

  /// Takes over the socket of `from`, an HTTP connection ending after its
  /// response, and what it read beyond that response's request: this
  /// connection serves the socket's next request.
  void adopt(connection& from) {
    ctx_ = from.ctx_;
    ctx_index_ = from.ctx_index_;
    registry_ = from.registry_;
    registry_->remove(&*from.socket_);
    socket_.emplace(std::move(*from.socket_));
    from.socket_.reset();
    registry_->add(&*socket_);
    tls_ = std::move(from.tls_);
    if (tls_)
      tls_.rebind(*socket_);
    spill_.swap(from.spill_);
    spill_pos_ = std::exchange(from.spill_pos_, 0);
    served_ = from.served_ < std::numeric_limits<uint32_t>::max()
      ? from.served_ + 1
      : from.served_;
  }

  /// Calls `callback` once the kept socket is readable (its next request
  /// begins, or the peer closed it), or with a timeout error once it stayed
  /// idle for the registry's idle_timeout: websocketpp then fails the
  /// connection, which closes the socket.
  void await_request(wtp::init_handler callback) {
    struct waiting {
      asio::steady_timer timer;
      wtp::init_handler callback; // empty once called
    };
    auto w = std::make_shared<waiting>(waiting{
      asio::steady_timer{*ctx_, registry_->idle_timeout}, std::move(callback)});
    w->timer.async_wait([self = get_shared(), w](const asio::error_code&) {
      if (!w->callback)
        return; // the request began first
      auto cb = std::move(w->callback);
      w->callback = nullptr;
      asio::error_code ignored;
      self->socket_->cancel(ignored);
      cb(wtp::error::make_error_code(wtp::error::timeout));
    });
    socket_->async_wait(
      asio::socket_base::wait_read, [w](const asio::error_code& ec) {
        if (!w->callback)
          return; // timed out first
        auto cb = std::move(w->callback);
        w->callback = nullptr;
        w->timer.cancel();
        cb(ec ? wtp::error::make_error_code(wtp::error::pass_through)
              : error_code{});
      });
  }

  /// The connection ending on this thread whose socket the next connection
  /// made on this thread adopts (set around registry::start_adopting).
  inline static thread_local connection* handing_over_ = nullptr;

  /// Offers `from`'s socket to the next connection made on this thread, for
  /// the scope of this object only (what no connection took is not offered
  /// to a later one, e.g. to the next accepted socket's).
  struct handover {
    explicit handover(connection* from) {
      handing_over_ = from;
    }
    ~handover() {
      handing_over_ = nullptr;
    }
  };

  /// What one attempt to read the socket gave.
  enum class input { data, wait_read, wait_write, eof, failed };

  /// Reads what the kernel holds (up to one thread-buffer), hands
  /// websocketpp its part and keeps the rest; waits for the reactor first if
  /// there is nothing yet. `wait_ec` is the error of that wait.
  void readable(const asio::error_code& wait_ec, size_t num_bytes, char* buf,
                size_t len, const wtp::read_handler& handler) {
    if (wait_ec) {
      handler(wait_ec, 0);
      return;
    }
    // Each thread reads into its own buffer and copies out at once: no
    // connection keeps it across calls.
    thread_local std::unique_ptr<char[]> chunk{new char[read_chunk]};
    size_t n = 0;
    asio::error_code ec;
    auto got = tls_ ? read_tls(chunk.get(), n, ec)
                    : read_plain(chunk.get(), n, ec);
    switch (got) {
      case input::wait_read:
      case input::wait_write:
        // Nothing to read yet (or TLS must write first): wait until the
        // socket is ready.
        socket_->async_wait(got == input::wait_read
                              ? asio::socket_base::wait_read
                              : asio::socket_base::wait_write,
                            [self = get_shared(), num_bytes, buf, len,
                             handler](const asio::error_code& ec) {
                              self->readable(ec, num_bytes, buf, len, handler);
                            });
        return;
      case input::eof:
        handler(wtp::error::make_error_code(wtp::error::eof), 0);
        return;
      case input::failed: handler(ec, 0); return;
      case input::data: break;
    }
    const char* data = chunk.get();
    if (auto skipped = skip_empty_lines(data, n); skipped > 0) {
      data += skipped;
      n -= skipped;
      if (n == 0) {
        async_read_at_least(num_bytes, buf, len, handler);
        return;
      }
    }
    if (spill_.empty() && n >= num_bytes) {
      // The common case: straight into websocketpp's buffer, any excess
      // spilled. (admit() gives at least one byte, all websocketpp asks.)
      auto direct = admit(data, std::min(n, len));
      std::memcpy(buf, data, direct);
      if (direct < n)
        spill_.assign(data + direct, data + n);
      handler(error_code{}, direct);
      return;
    }
    spill_.insert(spill_.end(), data, data + n);
    if (spilled() < num_bytes) {
      async_read_at_least(num_bytes, buf, len, handler);
      return;
    }
    handler(error_code{}, take_spill(buf, len));
  }

  /// One non-blocking read of the plain socket into `chunk`.
  input read_plain(char* chunk, size_t& n, asio::error_code& ec) {
    n = socket_->read_some(asio::buffer(chunk, read_chunk), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again)
      return input::wait_read;
    if (ec == asio::error::eof)
      return input::eof;
    return ec ? input::failed : input::data;
  }

  /// The handshake while it lasts, then everything OpenSSL can decrypt now
  /// into `chunk`: the records it has read ahead are drained in one go, but
  /// once it holds nothing more it is not asked to read the socket again
  /// (that would only cost a system call that finds the socket empty).
  input read_tls(char* chunk, size_t& n, asio::error_code& ec) {
    if (!tls_.established())
      if (auto r = tls_.handshake(); r != tls::result::done)
        return from_tls(r, ec);
    auto r = tls::result::done;
    do {
      size_t got = 0;
      r = tls_.read(chunk + n, read_chunk - n, got);
      n += got;
    } while (r == tls::result::done && n < read_chunk && tls_.has_pending());
    // Bytes first; an error after them shows again at the next read.
    return n > 0 ? input::data : from_tls(r, ec);
  }

  static input from_tls(tls::result r, asio::error_code& ec) {
    switch (r) {
      case tls::result::want_read: return input::wait_read;
      case tls::result::want_write: return input::wait_write;
      case tls::result::eof: return input::eof;
      case tls::result::failed:
        ec = wtp::error::make_error_code(wtp::error::tls_error);
        return input::failed;
      default: return input::data;
    }
  }

  /// Sends tls_data_ through OpenSSL, waiting whenever the socket is full;
  /// then reports the write (posted, as Asio reports a write that completed
  /// at once).
  void write_tls(wtp::write_handler handler) {
    while (tls_left_ > 0) {
      size_t n = 0;
      auto r = tls_.write(tls_data_, tls_left_, n);
      if (r == tls::result::done) {
        tls_data_ += n;
        tls_left_ -= n;
        continue;
      }
      if (r == tls::result::want_read || r == tls::result::want_write) {
        socket_->async_wait(r == tls::result::want_read
                              ? asio::socket_base::wait_read
                              : asio::socket_base::wait_write,
                            [self = get_shared(), h = std::move(handler)](
                              const asio::error_code& ec) mutable {
                              if (ec)
                                self->tls_written(std::move(h), ec);
                              else
                                self->write_tls(std::move(h));
                            });
        return;
      }
      tls_written(std::move(handler),
                  wtp::error::make_error_code(wtp::error::tls_error));
      return;
    }
    tls_written(std::move(handler), {});
  }

  /// Ends a TLS write: releases its gathered bytes and reports it.
  void tls_written(wtp::write_handler handler, const asio::error_code& ec) {
    std::vector<char>{}.swap(tls_out_);
    tls_data_ = nullptr;
    tls_left_ = 0;
    asio::post(*ctx_, [self = get_shared(), h = std::move(handler), ec] {
      self->written(h, ec);
    });
  }

  /// websocketpp's write waiting for the one in flight: its buffers (valid
  /// until its handler runs) and how many queued frames go before it.
  struct held_write {
    std::vector<wtp::buffer> bufs;
    size_t after;
    wtp::write_handler handler;
  };

  /// One fast-lane frame.
  struct out_frame {
    shared_bytes bytes;
    size_t counted;
  };

  /// Queues websocketpp's write behind the write in flight, or starts it
  /// now together with the frames queued before it.
  void write_or_hold(const wtp::buffer* bufs, size_t n,
                     wtp::write_handler handler) {
    if (write_busy_) {
      // websocketpp has one write in flight at most: at most one waits.
      held_.reset(new held_write{std::vector<wtp::buffer>(bufs, bufs + n),
                                 queued_.size(), std::move(handler)});
      return;
    }
    start_write(queued_.size(), bufs, n, std::move(handler));
  }

  /// Writes the first `frames` queued frames, then `extra` (websocketpp's
  /// buffers, if any), in one gathered write; `handler` (websocketpp's, or
  /// empty for frames alone) runs when it completed.
  void start_write(size_t frames, const wtp::buffer* extra, size_t n_extra,
                   wtp::write_handler handler) {
    write_busy_ = true;
    if (frames == queued_.size()) {
      in_flight_.swap(queued_);
    } else {
      auto end = queued_.begin() + static_cast<std::ptrdiff_t>(frames);
      in_flight_.assign(std::make_move_iterator(queued_.begin()),
                        std::make_move_iterator(end));
      queued_.erase(queued_.begin(), end);
    }
    iov_.clear();
    for (auto& f : in_flight_)
      iov_.emplace_back(f.bytes->data(), f.bytes->size());
    iov_.insert(iov_.end(), extra, extra + n_extra);
    if (tls_) {
      // One run of full records rather than a record per buffer (a frame
      // header alone would cost a record's 22+ bytes and an AEAD pass).
      if (iov_.size() == 1) {
        tls_data_ = iov_.front().buf;
        tls_left_ = iov_.front().len;
      } else {
        size_t total = 0;
        for (auto& b : iov_)
          total += b.len;
        tls_out_.reserve(total);
        for (auto& b : iov_)
          tls_out_.insert(tls_out_.end(), b.buf, b.buf + b.len);
        tls_data_ = tls_out_.data();
        tls_left_ = tls_out_.size();
      }
      write_tls(std::move(handler));
      return;
    }
    if (!handler) {
      // The fast lane's frames alone: offer them to the socket now, as an
      // epoll loop would. What it takes at once needs no Asio operation, no
      // posted completion and no later wake-up; the rest waits for Asio.
      asio::error_code ec;
      auto n = socket_->write_some(buffer_list{iov_}, ec);
      if (ec && ec != asio::error::would_block
          && ec != asio::error::try_again) {
        written(handler, ec);
        return;
      }
      if (consume(n)) {
        written(handler, ec);
        return;
      }
    }
    asio::async_write(*socket_, buffer_list{iov_},
                      [self = get_shared(), h = std::move(handler)](
                        const asio::error_code& ec, size_t) {
                        self->written(h, ec);
                      });
  }

  /// Drops the first `n` bytes of iov_ (written); true when none is left.
  bool consume(size_t n) {
    size_t done = 0;
    while (done < iov_.size() && n >= iov_[done].len)
      n -= iov_[done++].len;
    iov_.erase(iov_.begin(), iov_.begin() + static_cast<std::ptrdiff_t>(done));
    if (iov_.empty())
      return true;
    iov_.front().buf += n;
    iov_.front().len -= n;
    return false;
  }

  /// A gathered write completed: releases its frames, reports it to
  /// websocketpp (if it carried websocketpp's buffers) and to the observer,
  /// then starts the next one.
  void written(const wtp::write_handler& handler, const asio::error_code& ec) {
    write_busy_ = false;
    for (auto& f : in_flight_)
      queued_bytes_ -= f.counted;
    in_flight_.clear();
    trim(in_flight_);
    iov_.clear();
    trim(iov_);
    // An HTTP connection writes once: its response.
    answered_ = !ec;
    if (ec && !write_failed_) {
      // Drop what waits and end the connection: its read then fails, and
      // websocketpp learns it there if this write was not its own.
      write_failed_ = true;
      for (auto& f : queued_)
        queued_bytes_ -= f.counted;
      queued_.clear();
      trim(queued_);
      asio::error_code ignored;
      socket_->shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    }
    if (handler)
      handler(ec ? wtp::error::make_error_code(wtp::error::pass_through)
                 : error_code{});
    // Read after the handler: websocketpp has updated its send buffer, and
    // the handler may have ended the connection (and cleared the observer).
    if (observer_)
      observer_->on_written();
    if (write_busy_)
      return; // the handler wrote again
    if (held_) {
      auto next = std::move(held_);
      start_write(std::min(next->after, queued_.size()), next->bufs.data(),
                  next->bufs.size(), std::move(next->handler));
    } else if (!queued_.empty()) {
      start_write(queued_.size(), nullptr, 0, nullptr);
    }
  }

  /// Frees a vector's memory once it grew past what a quiet connection
  /// needs: a burst's queue is not kept for the connection's lifetime.
  template<class T>
  static void trim(std::vector<T>& xs) {
    if (xs.empty() && xs.capacity() > 8)
      std::vector<T>{}.swap(xs);
  }

  /// Bytes read per system call, into a per-thread buffer.
  static constexpr size_t read_chunk = 16 * 1024;

  asio::io_context* ctx_ = nullptr;
  write_observer* observer_ = nullptr;
  std::optional<asio::ip::tcp::socket> socket_;
  /// TLS over socket_ when the endpoint serves TLS (set on accept); empty
  /// for plain TCP.
  tls::session tls_;
  /// The rest of the TLS write in progress (websocketpp keeps its buffers
  /// until the write completes), and the gathered copy of several buffers
  /// (empty, allocating nothing, between writes).
  const char* tls_data_ = nullptr;
  size_t tls_left_ = 0;
  std::vector<char> tls_out_;
  /// Fast-lane frames waiting for the next write, and those in the write in
  /// flight (empty, allocating nothing, until the first frame).
  std::vector<out_frame> queued_;
  std::vector<out_frame> in_flight_;
  /// The buffers of the write in flight.
  std::vector<wtp::buffer> iov_;
  /// websocketpp's write waiting behind the write in flight, if any.
  std::unique_ptr<held_write> held_;
  /// The counted bytes of queued_ and in_flight_.
  size_t queued_bytes_ = 0;
  /// Where socket_ is registered (set with it).
  std::shared_ptr<socket_registry> registry_;
  /// Read but not yet handed over (empty, allocating nothing, while idle).
  std::vector<char> spill_;
  size_t spill_pos_ = 0;
  /// HTTP requests this socket carried before the current one.
  uint32_t served_ = 0;
  /// At most 64 (livehub.io-threads).
  uint16_t ctx_index_ = 0;
  /// The reader's phase in the current request (see admit()).
  phase phase_ : 2;
  /// How much of "\r\n\r\n" ends the head bytes handed so far (0 to 4).
  uint8_t matched_ : 3;
  /// Keep the socket after the response (keep_alive()).
  bool keep_ : 1;
  /// The last write (for an HTTP connection: its response) completed.
  bool answered_ : 1;
  /// A write is in flight.
  bool write_busy_ : 1;
  /// queue_frame() asked its caller for a flush() not yet made.
  bool flush_wanted_ : 1;
  /// A write failed: the connection is ending and takes no more frames.
  bool write_failed_ : 1;
  // served_ and these fill the space the old uint32_t ctx_index_ left
  // padded: a WebSocket connection is no larger than before.
};

/// The transport half of a websocketpp server endpoint: one acceptor and
/// `contexts` io_contexts, each to be run by exactly one thread (run(i)).
/// Connections are spread over the contexts round-robin.
template<class config>
class endpoint {
 public:
  using type = endpoint<config>;
  using transport_con_type = connection<config>;
  using transport_con_ptr = typename transport_con_type::ptr;
  using alog_type = typename config::alog_type;
  using elog_type = typename config::elog_type;

  endpoint() = default;

  endpoint(const endpoint&) = delete;
  endpoint& operator=(const endpoint&) = delete;

  bool is_secure() const {
    return tls_ != nullptr;
  }

  /// Serves TLS with `ctx` on every connection accepted from now on (call
  /// before listen()); nullptr serves plain TCP.
  void set_tls(std::shared_ptr<const tls::context> ctx) {
    tls_ = std::move(ctx);
  }

  /// Creates the io_contexts (once, before listen()).
  void init_asio(size_t contexts, error_code& ec) {
    if (!contexts_.empty() || contexts == 0) {
      ec = websocketpp::error::make_error_code(
        websocketpp::error::invalid_state);
      return;
    }
    for (size_t i = 0; i < contexts; ++i) {
      // One thread runs each context and does every socket operation of its
      // connections (other threads only post to it), so the reactor needs no
      // locking for I/O; the scheduler keeps its lock for those posts.
      contexts_.push_back(
        std::make_unique<asio::io_context>(ASIO_CONCURRENCY_HINT_UNSAFE_IO));
      guards_.emplace_back(asio::make_work_guard(*contexts_.back()));
    }
    acceptor_.emplace(*contexts_.front());
    ec = {};
  }

  void set_reuse_addr(bool value) {
    reuse_addr_ = value;
  }

  void set_listen_backlog(int backlog) {
    backlog_ = backlog;
  }

  /// Sets TCP_NODELAY on every accepted socket.
  void set_no_delay(bool value) {
    no_delay_ = value;
  }

  void listen(const asio::ip::tcp::endpoint& ep, error_code& ec) {
    if (!acceptor_ || listening_) {
      ec = websocketpp::error::make_error_code(
        websocketpp::error::invalid_state);
      return;
    }
    asio::error_code aec;
    acceptor_->open(ep.protocol(), aec);
    if (!aec)
      acceptor_->set_option(asio::socket_base::reuse_address(reuse_addr_), aec);
    if (!aec)
      acceptor_->bind(ep, aec);
    if (!aec)
      acceptor_->listen(backlog_, aec);
    if (aec) {
      asio::error_code ignored;
      acceptor_->close(ignored);
      ec = aec;
      return;
    }
    listening_ = true;
    ec = {};
  }

  asio::ip::tcp::endpoint get_local_endpoint(asio::error_code& ec) {
    if (!acceptor_) {
      ec = asio::error::bad_descriptor;
      return {};
    }
    return acceptor_->local_endpoint(ec);
  }

  bool is_listening() const {
    return listening_;
  }

  /// Stops accepting. Call on context 0's thread (the acceptor's).
  void stop_listening(error_code& ec) {
    if (!listening_) {
      ec = websocketpp::error::make_error_code(
        websocketpp::error::invalid_state);
      return;
    }
    listening_ = false;
    asio::error_code ignored;
    acceptor_->close(ignored);
    if (backoff_)
      backoff_->cancel();
    ec = {};
  }

  size_t contexts() const {
    return contexts_.size();
  }

  asio::io_context& context(size_t index) {
    return *contexts_[index];
  }

  /// Runs context `index` on the calling thread until stop().
  void run(size_t index) {
    contexts_[index]->run();
  }

  /// Stops every context; run() returns.
  void stop() {
    for (auto& guard : guards_)
      guard.reset();
    for (auto& ctx : contexts_)
      ctx->stop();
  }

  /// Keeps sockets open between HTTP requests where a connection asks for
  /// it (connection::keep_alive): `start` makes and starts a websocketpp
  /// connection (websocketpp's server: get_connection(), then start()),
  /// which adopts the socket in init(); a kept socket waits at most `idle`
  /// for its next request. Call before listen(). Without it, every socket
  /// closes after its HTTP response.
  void set_keep_alive(std::chrono::milliseconds idle,
                      std::function<void()> start) {
    registry_->idle_timeout = idle;
    registry_->start_adopting = std::move(start);
  }

  /// Aborts every connection's socket (see socket_registry::abort_all);
  /// returns how many were still open. Call after stop(), once every run()
  /// returned; connections made later are not registered.
  size_t abort_connections() {
    return registry_->abort_all();
  }

 protected:
  void init_logging(const std::shared_ptr<alog_type>&,
                    const std::shared_ptr<elog_type>&) {
    // livehub's transport logs nothing
  }

  /// Binds a new connection to the next context, or, where a connection
  /// ending after an HTTP response hands its socket over on this thread (see
  /// connection::async_shutdown), to that socket and its context.
  error_code init(transport_con_ptr tcon) {
    if (auto* from = transport_con_type::handing_over_) {
      transport_con_type::handing_over_ = nullptr;
      tcon->adopt(*from);
      return {};
    }
    auto index = next_++ % contexts_.size();
    tcon->ctx_ = contexts_[index].get();
    tcon->ctx_index_ = static_cast<uint16_t>(index);
    tcon->socket_.emplace(*tcon->ctx_);
    tcon->registry_ = registry_;
    registry_->add(&*tcon->socket_);
    return {};
  }

  void async_accept(transport_con_ptr tcon, wtp::accept_handler callback,
                    error_code& ec) {
    if (!listening_) {
      ec = websocketpp::error::make_error_code(
        websocketpp::error::async_accept_not_listening);
      return;
    }
    ec = {};
    acceptor_->async_accept(
      *tcon->socket_,
      [this, tcon, cb = std::move(callback)](const asio::error_code& aec) {
        accepted(tcon, cb, aec);
      });
  }

 private:
  void accepted(const transport_con_ptr& tcon,
                const wtp::accept_handler& callback,
                const asio::error_code& aec) {
    if (aec == asio::error::operation_aborted) {
      callback(websocketpp::error::make_error_code(
        websocketpp::error::operation_canceled));
      return;
    }
    if (aec == asio::error::no_descriptors
        || aec == std::errc::too_many_files_open_in_system
        || aec == asio::error::no_buffer_space
        || aec == asio::error::no_memory) {
      // Out of descriptors (or kernel memory): websocketpp would accept
      // again at once and spin. Wait a little; connections closing free
      // descriptors meanwhile.
      if (!backoff_)
        backoff_.emplace(*contexts_.front());
      backoff_->expires_after(std::chrono::milliseconds(50));
      backoff_->async_wait([tcon, callback, aec](const asio::error_code&) {
        callback(aec);
      });
      return;
    }
    if (!aec) {
      // Reads are attempted when the socket is readable (read_some must not
      // block); writes go through Asio's async_write either way.
      asio::error_code ignored;
      tcon->socket_->non_blocking(true, ignored);
      if (no_delay_)
        tcon->socket_->set_option(asio::ip::tcp::no_delay{true}, ignored);
      if (tls_) {
        // The handshake waits for the connection's first read (see the
        // opening comment).
        tcon->tls_ = tls::session{*tls_, *tcon->socket_};
        if (!tcon->tls_) {
          callback(asio::error::no_memory);
          return;
        }
      }
    }
    callback(aec);
  }

  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>>
    guards_;
  std::optional<asio::ip::tcp::acceptor> acceptor_;
  std::optional<asio::steady_timer> backoff_;
  /// Set when the endpoint serves TLS.
  std::shared_ptr<const tls::context> tls_;
  std::shared_ptr<socket_registry> registry_
    = std::make_shared<socket_registry>();
  size_t next_ = 0;
  int backlog_ = asio::socket_base::max_listen_connections;
  bool reuse_addr_ = false;
  bool no_delay_ = false;
  bool listening_ = false;
};

} // namespace livehub::transport::lean

// livehub-epoll: the physical-limit yardstick of bench/run. No WebSocket or
// HTTP library, no actors: one thread, level-triggered epoll, non-blocking
// sockets, written from scratch for the benchmark. It speaks the subset of
// livehub's protocol the benchmark uses, as livehub-baseline does:
//   subscribe / unsubscribe (an `ok` reply when the command has an id),
//   publish (only on trusted connections: loopback peer, no Origin header),
//   ping -> pong, POST /api/publish, GET /api/stats, GET /healthz.
//
// What makes it fast, and what livehub's fast lane aims at:
// - a publication's WebSocket frame (header and JSON) is built once and
//   shared by every subscriber's queue (server frames are unmasked, so the
//   bytes are the same for all);
// - after each epoll_wait batch, every connection with pending bytes gets
//   one writev of everything pending for it (up to IOV_MAX buffers);
// - a connection with more than 1 MiB pending is closed (slow reader).
// Honest: every publication is its own WebSocket message (never glued), the
// handshake is checked and answered per RFC 6455 (Sec-WebSocket-Accept),
// client frames must be masked, control frames are answered.
//
// Run:  livehub-epoll [--host=127.0.0.1] [--port=8080]   (--port=0 picks a
// free port; the first line of stdout is "listening on HOST:PORT").
// SIGINT / SIGTERM: close every connection, exit 0.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "bench_protocol.hpp"
#include "server_args.hpp"

namespace {

using buffer = std::shared_ptr<const std::string>;

/// Pending bytes past which a connection is a slow reader and is closed.
constexpr size_t max_pending = 1 << 20;

/// Largest message or HTTP body accepted (as livehub-baseline).
constexpr size_t max_message = 512 * 1024;

/// Longest HTTP request head.
constexpr size_t max_head = 8192;

// -- WebSocket and HTTP encoding ---------------------------------------------

/// A server frame (FIN set, unmasked) carrying `payload`.
std::string ws_frame(uint8_t opcode, std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 10);
  out += static_cast<char>(0x80 | opcode);
  auto n = payload.size();
  if (n < 126) {
    out += static_cast<char>(n);
  } else if (n <= 0xFFFF) {
    out += static_cast<char>(126);
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n & 0xFF);
  } else {
    out += static_cast<char>(127);
    for (int shift = 56; shift >= 0; shift -= 8)
      out += static_cast<char>((static_cast<uint64_t>(n) >> shift) & 0xFF);
  }
  out.append(payload);
  return out;
}

std::string base64(const unsigned char* data, size_t n) {
  static constexpr char alphabet[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = static_cast<uint32_t>(data[i]) << 16;
    if (i + 1 < n)
      v |= static_cast<uint32_t>(data[i + 1]) << 8;
    if (i + 2 < n)
      v |= data[i + 2];
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
    out += i + 2 < n ? alphabet[v & 63] : '=';
  }
  return out;
}

/// Sec-WebSocket-Accept for `key` (RFC 6455, section 4.2.2).
std::string accept_key(std::string_view key) {
  std::string text{key};
  text += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha1(), nullptr);
  return base64(digest, size);
}

bool iequals(std::string_view x, std::string_view y) {
  return x.size() == y.size()
    && std::equal(x.begin(), x.end(), y.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a))
             == std::tolower(static_cast<unsigned char>(b));
         });
}

/// The value of header `name` in a request head, or none.
std::string_view header(std::string_view head, std::string_view name) {
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    auto start = pos + 2;
    auto end = head.find("\r\n", start);
    auto line = head.substr(
      start,
      end == std::string_view::npos ? std::string_view::npos : end - start);
    auto colon = line.find(':');
    if (colon != std::string_view::npos
        && iequals(line.substr(0, colon), name)) {
      auto value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
        value.remove_suffix(1);
      return value;
    }
    pos = end;
  }
  return {};
}

bool contains_token(std::string_view value, std::string_view token) {
  size_t start = 0;
  while (start <= value.size()) {
    auto end = value.find(',', start);
    auto item = value.substr(
      start,
      end == std::string_view::npos ? std::string_view::npos : end - start);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    if (iequals(item, token))
      return true;
    if (end == std::string_view::npos)
      break;
    start = end + 1;
  }
  return false;
}

std::string http_response(const char* status, std::string_view type,
                          std::string_view body) {
  std::string out = "HTTP/1.1 ";
  out += status;
  out += "\r\nContent-Type: ";
  out += type;
  out += "\r\nContent-Length: " + std::to_string(body.size());
  out += "\r\nConnection: close\r\n\r\n";
  out += body;
  return out;
}

// -- the server ---------------------------------------------------------------

struct connection {
  int fd = -1;
  bool loopback = false;
  bool websocket = false;
  bool trusted = false;
  /// Close once everything pending is written (HTTP answered, close frame).
  bool close_after_flush = false;
  bool dead = false;
  /// More than max_pending bytes wait: closed at the end of the batch.
  bool slow = false;
  bool dirty = false;
  bool want_out = false;
  std::string in;
  /// A fragmented message being assembled.
  std::string message;
  std::deque<buffer> out;
  /// Bytes of out.front() already written.
  size_t out_offset = 0;
  size_t pending = 0;
  std::vector<std::string> channels;
};

class epoll_server {
 public:
  int run(const std::string& host, uint16_t port) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    signals_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
      std::cerr << "livehub-epoll: bad host " << host << "\n";
      return 1;
    }
    if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
        || listen(listener_, 1024) != 0) {
      std::cerr << "livehub-epoll: listen: " << std::strerror(errno) << "\n";
      return 1;
    }
    socklen_t len = sizeof(addr);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    std::cout << "listening on " << host << ":" << ntohs(addr.sin_port)
              << std::endl;
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    add(listener_, EPOLLIN, &listener_);
    add(signals_, EPOLLIN, &signals_);
    std::vector<epoll_event> events(512);
    while (!stopping_) {
      int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                         -1);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        break;
      }
      for (int i = 0; i < n; ++i) {
        auto* tag = events[i].data.ptr;
        if (tag == &listener_) {
          accept_all();
        } else if (tag == &signals_) {
          stopping_ = true;
        } else {
          auto* c = static_cast<connection*>(tag);
          if (c->dead)
            continue;
          if (events[i].events & (EPOLLERR | EPOLLHUP)) {
            kill(c);
            continue;
          }
          if (events[i].events & EPOLLIN)
            read_from(c);
          if (!c->dead && (events[i].events & EPOLLOUT))
            mark(c);
        }
      }
      flush_all();
    }
    // Shut down: close frames to WebSocket peers, then close everything.
    for (auto& kvp : conns_) {
      auto* c = kvp.second.get();
      if (c->websocket && !c->dead) {
        auto frame = ws_frame(0x8, std::string_view{"\x03\xe9", 2});
        auto ignored = ::send(c->fd, frame.data(), frame.size(), MSG_NOSIGNAL);
        (void)ignored;
      }
      close(c->fd);
    }
    return 0;
  }

 private:
  void add(int fd, uint32_t events, void* tag) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = tag;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
  }

  void accept_all() {
    for (;;) {
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      int fd = accept4(listener_, reinterpret_cast<sockaddr*>(&peer), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0)
        return; // EAGAIN, or out of descriptors: try at the next event
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto c = std::make_unique<connection>();
      c->fd = fd;
      if (peer.ss_family == AF_INET) {
        auto* in = reinterpret_cast<sockaddr_in*>(&peer);
        c->loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
      }
      add(fd, EPOLLIN, c.get());
      conns_.emplace(c.get(), std::move(c));
    }
  }

  void read_from(connection* c) {
    char buf[65536];
    for (;;) {
      auto n = ::read(c->fd, buf, sizeof(buf));
      if (n > 0) {
        c->in.append(buf, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof(buf))
          break;
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        kill(c);
        return;
      }
      if (errno == EAGAIN)
        break;
    }
    size_t used = c->websocket ? read_frames(c) : read_http(c);
    if (c->dead)
      return;
    c->in.erase(0, used);
    if (c->in.size() > max_message + max_head)
      kill(c);
  }

  // -- HTTP -------------------------------------------------------------------

  size_t read_http(connection* c) {
    if (c->close_after_flush)
      return c->in.size(); // answered: ignore the rest
    auto end = c->in.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (c->in.size() > max_head)
        answer(c, "431 Request Header Fields Too Large", "{}");
      return 0;
    }
    std::string_view head{c->in.data(), end + 2};
    auto line_end = head.find("\r\n");
    auto line = head.substr(0, line_end);
    auto sp1 = line.find(' ');
    auto sp2 = line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
      answer(c, "400 Bad Request", R"({"error":"bad request"})");
      return c->in.size();
    }
    auto method = line.substr(0, sp1);
    auto path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    path = path.substr(0, path.find('?'));
    bool no_origin = header(head, "Origin").empty();
    if (method == "GET" && contains_token(header(head, "Upgrade"), "websocket")
        && contains_token(header(head, "Connection"), "upgrade")) {
      auto key = header(head, "Sec-WebSocket-Key");
      if (key.empty() || header(head, "Sec-WebSocket-Version") != "13") {
        answer(c, "400 Bad Request", R"({"error":"bad handshake"})");
        return c->in.size();
      }
      queue(c,
            std::make_shared<const std::string>(
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Accept: "
              + accept_key(key) + "\r\n\r\n"));
      c->websocket = true;
      c->trusted = c->loopback && no_origin;
      auto used = end + 4;
      // Frames sent right behind the handshake.
      std::string rest = c->in.substr(used);
      c->in = std::move(rest);
      return read_frames(c);
    }
    size_t body_size = 0;
    if (auto cl = header(head, "Content-Length"); !cl.empty())
      body_size = std::strtoull(std::string{cl}.c_str(), nullptr, 10);
    if (body_size > max_message) {
      answer(c, "413 Payload Too Large", R"({"error":"too large"})");
      return c->in.size();
    }
    if (c->in.size() < end + 4 + body_size)
      return 0; // the body is on its way
    std::string_view body{c->in.data() + end + 4, body_size};
    if (method == "GET" && path == "/api/stats") {
      answer(c, "200 OK",
             bench::stats_json(websockets(), channels_.size(), subscriptions_,
                               published_, delivered_));
    } else if (method == "GET" && path == "/healthz") {
      answer(c, "200 OK", "ok", "text/plain");
    } else if (method == "POST" && path == "/api/publish") {
      if (!c->loopback || !no_origin) {
        answer(c, "403 Forbidden", R"({"error":"forbidden"})");
      } else {
        bench::publish_body pub;
        if (!bench::read_publish_body(body, pub)) {
          answer(c, "400 Bad Request", R"({"error":"bad request"})");
        } else {
          publish(pub.channel, pub.type, pub.data);
          answer(c, "202 Accepted", R"({"ok":true})");
        }
      }
    } else {
      answer(c, "404 Not Found", "not found", "text/plain");
    }
    return c->in.size();
  }

  void answer(connection* c, const char* status, std::string_view body,
              std::string_view type = "application/json") {
    queue(
      c,
      std::make_shared<const std::string>(http_response(status, type, body)));
    c->close_after_flush = true;
  }

  // -- WebSocket --------------------------------------------------------------

  /// Reads every complete frame of c->in; returns the bytes used.
  size_t read_frames(connection* c) {
    size_t pos = 0;
    auto& in = c->in;
    while (!c->dead && !c->close_after_flush) {
      if (in.size() - pos < 2)
        break;
      auto b0 = static_cast<uint8_t>(in[pos]);
      auto b1 = static_cast<uint8_t>(in[pos + 1]);
      bool fin = b0 & 0x80;
      uint8_t opcode = b0 & 0x0F;
      if ((b0 & 0x70) || !(b1 & 0x80))
        return fail(c, 1002, pos); // reserved bits, or an unmasked frame
      uint64_t n = b1 & 0x7F;
      size_t header_size = 2;
      if (n == 126) {
        if (in.size() - pos < 4)
          break;
        n = (static_cast<uint64_t>(static_cast<uint8_t>(in[pos + 2])) << 8)
          | static_cast<uint8_t>(in[pos + 3]);
        header_size = 4;
      } else if (n == 127) {
        if (in.size() - pos < 10)
          break;
        n = 0;
        for (int i = 0; i < 8; ++i)
          n = (n << 8) | static_cast<uint8_t>(in[pos + 2 + i]);
        header_size = 10;
      }
      if (n > max_message)
        return fail(c, 1009, pos);
      if (in.size() - pos < header_size + 4 + n)
        break;
      const char* key = &in[pos + header_size];
      char* data = &in[pos + header_size + 4];
      for (uint64_t i = 0; i < n; ++i)
        data[i] ^= key[i % 4];
      std::string_view payload{data, static_cast<size_t>(n)};
      pos += header_size + 4 + static_cast<size_t>(n);
      switch (opcode) {
        case 0x0: // continuation
          if (c->message.size() + payload.size() > max_message)
            return fail(c, 1009, pos);
          c->message.append(payload);
          if (fin) {
            auto text = std::move(c->message);
            c->message.clear();
            command(c, text);
          }
          break;
        case 0x1:
          if (fin)
            command(c, payload);
          else
            c->message.assign(payload);
          break;
        case 0x8: // close: answer and go
          queue(c,
                std::make_shared<const std::string>(
                  ws_frame(0x8, payload.substr(0, 2))));
          c->close_after_flush = true;
          break;
        case 0x9:
          queue(c, std::make_shared<const std::string>(ws_frame(0xA, payload)));
          break;
        case 0xA: break;
        default: return fail(c, 1003, pos);
      }
    }
    return pos;
  }

  size_t fail(connection* c, uint16_t code, size_t pos) {
    char reason[2] = {static_cast<char>(code >> 8),
                      static_cast<char>(code & 0xFF)};
    queue(c,
          std::make_shared<const std::string>(
            ws_frame(0x8, std::string_view{reason, 2})));
    c->close_after_flush = true;
    return std::max(pos, c->in.size());
  }

  void send_text(connection* c, std::string_view text) {
    queue(c, std::make_shared<const std::string>(ws_frame(0x1, text)));
  }

  void reply_ok(connection* c, const std::string& id) {
    if (!id.empty())
      send_text(c, bench::ok_json(id));
  }

  void command(connection* c, std::string_view text) {
    bench::command cmd;
    bench::read_command(text, cmd);
    auto& id = cmd.id;
    switch (cmd.kind) {
      case bench::command::malformed:
        return send_text(c, bench::error_json(id, cmd.error, cmd.message));
      case bench::command::subscribe: {
        if (!cmd.channel || *cmd.channel == "*")
          return send_text(c, bad_channel(id));
        auto& channel = *cmd.channel;
        if (std::find(c->channels.begin(), c->channels.end(), channel)
            == c->channels.end()) {
          c->channels.push_back(channel);
          channels_[channel].push_back(c);
          ++subscriptions_;
        }
        return reply_ok(c, id);
      }
      case bench::command::unsubscribe: {
        if (!cmd.channel)
          return send_text(c, bad_channel(id));
        auto i = std::find(c->channels.begin(), c->channels.end(),
                           *cmd.channel);
        if (i != c->channels.end()) {
          c->channels.erase(i);
          leave(c, *cmd.channel);
        }
        return reply_ok(c, id);
      }
      case bench::command::publish:
        if (!c->trusted)
          return send_text(
            c, bench::error_json(id, "forbidden", "not a trusted publisher"));
        if (!cmd.channel)
          return send_text(c, bad_channel(id));
        publish(*cmd.channel, cmd.event, cmd.data);
        return reply_ok(c, id);
      case bench::command::ping: return send_text(c, bench::pong_json(id));
      case bench::command::unknown:
        return send_text(
          c, bench::error_json(id, "unknown_command", "unknown type"));
    }
  }

  static std::string bad_channel(const std::string& id) {
    return bench::error_json(id, "bad_channel", "bad channel");
  }

  /// The frame is built once, then shared by every subscriber's queue.
  void publish(std::string_view channel, std::string_view event,
               const rapidjson::Value* data) {
    auto frame = std::make_shared<const std::string>(
      ws_frame(0x1, bench::publication_json(channel, event, data)));
    ++published_;
    if (channel == "*") {
      for (auto& kvp : conns_)
        if (kvp.first->websocket && !kvp.first->dead) {
          queue(kvp.first, frame);
          ++delivered_;
        }
      return;
    }
    auto i = channels_.find(std::string{channel});
    if (i == channels_.end())
      return;
    for (auto* c : i->second) {
      queue(c, frame);
      ++delivered_;
    }
  }

  // -- writing ----------------------------------------------------------------

  /// Queues `b` on `c`. A slow reader (over max_pending) is closed at the
  /// end of the batch (flush_all), so that no subscriber list changes while
  /// a publication walks it.
  void queue(connection* c, buffer b) {
    if (c->dead || c->slow)
      return;
    c->pending += b->size();
    c->out.push_back(std::move(b));
    if (c->pending > max_pending)
      c->slow = true;
    mark(c);
  }

  void mark(connection* c) {
    if (!c->dirty) {
      c->dirty = true;
      dirty_.push_back(c);
    }
  }

  void flush_all() {
    auto list = std::move(dirty_);
    dirty_.clear();
    for (auto* c : list) {
      c->dirty = false;
      if (c->slow)
        kill(c);
      else if (!c->dead)
        flush(c);
    }
    for (auto* c : dead_)
      conns_.erase(c);
    dead_.clear();
  }

  /// One writev of everything pending (up to IOV_MAX buffers).
  void flush(connection* c) {
    while (!c->out.empty()) {
      iovec iov[IOV_MAX];
      int n = 0;
      for (auto i = c->out.begin(); i != c->out.end() && n < IOV_MAX; ++i) {
        auto skip = n == 0 ? c->out_offset : 0;
        iov[n].iov_base = const_cast<char*>((*i)->data() + skip);
        iov[n].iov_len = (*i)->size() - skip;
        ++n;
      }
      auto written = ::writev(c->fd, iov, n);
      if (written < 0) {
        if (errno == EAGAIN || errno == EINTR)
          break;
        kill(c);
        return;
      }
      auto left = static_cast<size_t>(written);
      c->pending -= left;
      while (left > 0) {
        auto rest = c->out.front()->size() - c->out_offset;
        if (left >= rest) {
          left -= rest;
          c->out.pop_front();
          c->out_offset = 0;
        } else {
          c->out_offset += left;
          left = 0;
        }
      }
      if (n < IOV_MAX)
        break; // everything was offered: what is left did not fit
    }
    if (c->out.empty() && c->close_after_flush) {
      kill(c);
      return;
    }
    bool want = !c->out.empty();
    if (want != c->want_out) {
      c->want_out = want;
      epoll_event ev{};
      ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
      ev.data.ptr = c;
      epoll_ctl(epoll_, EPOLL_CTL_MOD, c->fd, &ev);
    }
  }

  void leave(connection* c, const std::string& channel) {
    auto j = channels_.find(channel);
    if (j == channels_.end())
      return;
    auto& subs = j->second;
    auto k = std::find(subs.begin(), subs.end(), c);
    if (k != subs.end()) {
      subs.erase(k);
      --subscriptions_;
    }
    if (subs.empty())
      channels_.erase(j);
  }

  /// Closes `c` now; its memory goes after the current batch.
  void kill(connection* c) {
    if (c->dead)
      return;
    c->dead = true;
    for (auto& name : c->channels)
      leave(c, name);
    c->channels.clear();
    c->out.clear();
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c->fd, nullptr);
    close(c->fd);
    dead_.push_back(c);
  }

  size_t websockets() const {
    size_t n = 0;
    for (auto& kvp : conns_)
      n += kvp.first->websocket && !kvp.first->dead;
    return n;
  }

  int epoll_ = -1;
  int listener_ = -1;
  int signals_ = -1;
  bool stopping_ = false;
  std::unordered_map<connection*, std::unique_ptr<connection>> conns_;
  std::unordered_map<std::string, std::vector<connection*>> channels_;
  std::vector<connection*> dirty_;
  std::vector<connection*> dead_;
  uint64_t subscriptions_ = 0;
  uint64_t published_ = 0;
  uint64_t delivered_ = 0;
};

} // namespace

int main(int argc, char** argv) {
  auto args = bench::parse_server_args(argc, argv, "livehub-epoll");
  if (!args)
    return 2;
  epoll_server s;
  return s.run(args->host, args->port);
}

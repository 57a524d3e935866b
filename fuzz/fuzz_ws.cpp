// libFuzzer target: the WebSocket read path through the real transport. One
// livehub server (hub, client actors, websocketpp over the lean transport)
// runs in this process on 127.0.0.1, started once (with a token secret, an
// allowed Origin, client publishing on room:*, public channels public:*,
// history on room:h* and public:h*, presence on public:* and room:p*, and a
// web root); every input is one TCP connection to it. The first byte picks
// what the rest of the input is:
//
//   0  frames after a valid upgrade: a sequence of [byte 0 of the frame
//      header (FIN, RSV, opcode)] [length, 2 bytes little-endian] [payload],
//      sent as masked frames (the length is cut to what the input holds);
//   1  raw bytes after a valid upgrade (unmasked frames, bad lengths, ...);
//   2  raw bytes as the HTTP request itself;
//   3  an HTTP request: the first line of the rest is the target (e.g.
//      "/api/publish" or "/api/channels?limit=5"), the remainder its body,
//      sent with Content-Length as a GET (bit 0x10 of the first byte clear)
//      or a POST (set).
//
// In modes 0 and 1, bit 0x10 of the first byte adds an allowed Origin: the
// connection is then a browser's, which must `connect` with a token (signed
// with the secret below) before anything else; without it a loopback peer is
// a trusted publisher. After sending, the harness waits for the server's
// answers (with bit 0x20: until it is silent for 5 ms after the first, at
// most 50 ms), half-closes, reads until the server closes or 50 ms pass,
// then resets the connection.
//
// Findings: the server crashes (a sanitizer report), refuses or ignores a
// valid upgrade afterwards (a leaked connection count, a stalled I/O
// thread), grows beyond -rss_limit_mb / -malloc_limit_mb, or sends what a
// client cannot read: a text frame that is no JSON object, a masked frame,
// a JSON HTTP body that is no JSON object.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include "livehub/all.hpp"
#include "strict_json.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// The token secret of the server (the seed corpus's tokens use it).
constexpr const char* token_secret = "livehub-fuzz-secret";

/// The Origin that the server allows (bit 0x10 in modes 0 and 1).
constexpr const char* allowed_origin = "http://fuzz.example";

/// How long the harness reads the server's answer to one input.
constexpr milliseconds read_time{50};

/// With bit 0x20: the silence after which the server has answered.
constexpr milliseconds answer_time{5};

/// How long a valid upgrade may take before the server counts as stuck.
constexpr milliseconds upgrade_time{5000};

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz_ws: %s\n  %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

/// The served hub, made once and kept for the whole run.
struct served {
  caf::actor_system_config sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  livehub::hub_actor hub;
  std::unique_ptr<livehub::server> srv;
  std::string web_root;
  uint16_t port = 0;

  served() {
    // One scheduler thread and one I/O thread: the machine is shared, and
    // fewer threads make runs more repeatable.
    sys_cfg.set("scheduler.max-threads", size_t{1});
    sys = std::make_unique<caf::actor_system>(sys_cfg);
    // In $TMPDIR: fuzz/run points it into its own temporary directory, so
    // that a crash (no exit handlers) leaves nothing behind.
    auto tmpl
      = (std::filesystem::temp_directory_path() / "livehub-fuzz-ws-XXXXXX")
          .string();
    if (!mkdtemp(tmpl.data()))
      fail("cannot make a temporary directory", tmpl);
    web_root = tmpl;
    std::ofstream{web_root + "/index.html"} << "<!doctype html>\n";
    std::filesystem::create_directory(web_root + "/sub");
    std::ofstream{web_root + "/sub/app.js"} << "console.log(1)\n";
    livehub::hub_config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.web_root = web_root;
    cfg.allowed_origins = {allowed_origin};
    cfg.token_hmac_secret = token_secret;
    cfg.client_publish = {"room:*"};
    cfg.public_channels = std::vector<std::string>{"public:*"};
    // History on some channels, kept small so that it wraps.
    cfg.history_channels = {"room:h*", "public:h*"};
    cfg.history_size = 8;
    cfg.presence_channels = {"public:*", "room:p*"};
    cfg.io_threads = 1;
    hub = livehub::spawn_hub(*sys, cfg);
    auto started = livehub::server::start(*sys, hub, cfg);
    if (!started)
      fail("server::start failed", sys->render(started.error()));
    srv = std::move(*started);
    port = srv->port();
  }

  /// Stops the server (its I/O thread ends, its sockets close) and the hub
  /// at exit. The actor system stays: exit() has destroyed CAF's function-
  /// local statics made after LLVMFuzzerInitialize by then, which
  /// ~actor_system would touch, and its idle threads harm nothing.
  void stop() {
    srv.reset();
    caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
    std::error_code ec;
    std::filesystem::remove_all(web_root, ec);
  }
};

served* the_server;

/// A TCP connection to the server, reset (not closed gracefully) at the end
/// so that no TIME_WAIT state piles up over thousands of inputs.
class connection {
 public:
  explicit connection(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0)
      fail("socket() failed", std::strerror(errno));
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0)
      return;
    // libFuzzer's SIGALRM (its -timeout check) may interrupt connect(),
    // which then goes on in the background: wait for its outcome.
    if (errno == EINTR) {
      pollfd p{fd_, POLLOUT, 0};
      while (poll(&p, 1, 5000) < 0 && errno == EINTR)
        continue;
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if ((p.revents & POLLOUT) != 0 && err == 0)
        return;
      errno = err != 0 ? err : ETIMEDOUT;
    }
    fail("cannot connect to the server", std::strerror(errno));
  }

  ~connection() {
    linger lin{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
    ::close(fd_);
  }

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Sends all of `bytes`, unless the server closed meanwhile.
  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return; // the server closed or reset: that is allowed
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  /// Appends what arrives to received() until `deadline`, or until nothing
  /// more arrived for `idle` after something did (when not zero), or until
  /// `until` shows up in it (when not empty); false on end of stream or
  /// error.
  bool read(clock_type::time_point deadline, milliseconds idle = {},
            std::string_view until = {}) {
    char buf[4096];
    bool got = false;
    for (;;) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline
                                                           - clock_type::now());
      if (got && idle.count() > 0)
        left = std::min(left, idle);
      if (left.count() <= 0)
        return true;
      pollfd p{fd_, POLLIN, 0};
      auto ready = poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR)
        continue;
      if (ready <= 0)
        return true;
      auto n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return false;
      received_.append(buf, static_cast<size_t>(n));
      got = true;
      if (!until.empty() && received_.find(until) != std::string::npos)
        return true;
    }
  }

  /// A valid upgrade to /ws; aborts unless the server answers 101 in time.
  /// What follows the response's headers stays in received().
  void upgrade(bool with_origin) {
    std::string req = "GET /ws HTTP/1.1\r\n"
                      "Host: 127.0.0.1:"
      + std::to_string(the_server->port)
      + "\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n";
    if (with_origin)
      req += std::string{"Origin: "} + allowed_origin + "\r\n";
    req += "\r\n";
    send(req);
    read(clock_type::now() + upgrade_time, {}, "\r\n\r\n");
    auto end = received_.find("\r\n\r\n");
    if (end == std::string::npos)
      fail("no answer to a valid upgrade within 5 s", received_);
    if (received_.compare(0, 12, "HTTP/1.1 101") != 0)
      fail("a valid upgrade was refused", received_);
    received_.erase(0, end + 4);
  }

  /// Waits for the server's answers until it falls silent for `idle` after
  /// the first (at most `read_time`), if `idle` is not zero; then
  /// half-closes and reads until the server closes or `read_time` passes.
  void finish(milliseconds idle) {
    if (idle.count() > 0 && !read(clock_type::now() + read_time, idle))
      return;
    shutdown(fd_, SHUT_WR);
    read(clock_type::now() + read_time);
  }

  /// Everything the server sent (after the upgrade's response).
  const std::string& received() const {
    return received_;
  }

 private:
  int fd_ = -1;
  std::string received_;
};

/// Frames from [header byte 0][length: 2 bytes LE][payload] records, masked
/// as a client must, each length encoded in its shortest form.
std::string masked_frames(std::string_view in) {
  static constexpr unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  std::string out;
  while (!in.empty()) {
    auto b0 = static_cast<unsigned char>(in[0]);
    size_t len = 0;
    if (in.size() > 1)
      len = static_cast<unsigned char>(in[1]);
    if (in.size() > 2)
      len |= size_t{static_cast<unsigned char>(in[2])} << 8;
    in.remove_prefix(std::min<size_t>(3, in.size()));
    len = std::min(len, in.size());
    out += static_cast<char>(b0);
    if (len < 126) {
      out += static_cast<char>(0x80 | len);
    } else {
      out += static_cast<char>(0x80 | 126);
      out += static_cast<char>(len >> 8);
      out += static_cast<char>(len & 0xff);
    }
    out.append(reinterpret_cast<const char*>(mask), 4);
    for (size_t i = 0; i < len; ++i)
      out += static_cast<char>(in[i] ^ static_cast<char>(mask[i % 4]));
    in.remove_prefix(len);
  }
  return out;
}

uint64_t big_endian(std::string_view bytes) {
  uint64_t x = 0;
  for (auto c : bytes)
    x = x << 8 | static_cast<unsigned char>(c);
  return x;
}

/// Checks the frames the server sent after its 101: unmasked, no RSV bits,
/// each text frame one JSON object (by a strict reader, as browsers read
/// them), close codes that may go on the wire. A frame cut off by the end
/// of the read is not checked.
void check_frames(std::string_view in) {
  while (in.size() >= 2) {
    auto b0 = static_cast<unsigned char>(in[0]);
    auto b1 = static_cast<unsigned char>(in[1]);
    if ((b1 & 0x80) != 0)
      fail("the server sent a masked frame", in);
    if ((b0 & 0x70) != 0)
      fail("the server sent a frame with RSV bits", in);
    uint64_t len = b1 & 0x7f;
    size_t header = 2;
    if (len >= 126) {
      header = len == 126 ? 4 : 10;
      if (in.size() < header)
        return;
      len = big_endian(in.substr(2, header - 2));
    }
    if (in.size() - header < len)
      return;
    auto payload = in.substr(header, static_cast<size_t>(len));
    auto opcode = b0 & 0x0f;
    if (opcode == 1 && !livehub::fuzz::strict_json::object(payload))
      fail("the server sent a text frame that is no JSON object", payload);
    if (opcode == 8 && len >= 2) {
      auto code = big_endian(payload.substr(0, 2));
      if (code < 1000 || code >= 5000 || code == 1005 || code == 1006
          || code == 1015)
        fail("the server sent a close code that never goes on the wire",
             payload);
    }
    in.remove_prefix(header + static_cast<size_t>(len));
  }
}

/// Checks the server's answer to a plain HTTP request: an HTTP/1.1 response
/// whose JSON body, if complete, is a JSON object. A 101 (the raw bytes may
/// be an upgrade) is followed by frames.
void check_http(std::string_view r) {
  if (r.empty())
    return; // the server may close without an answer
  if (r.substr(0, 9) != "HTTP/1.1 ")
    fail("the server's answer is no HTTP/1.1 response", r);
  auto end = r.find("\r\n\r\n");
  if (end == std::string_view::npos)
    return;
  auto head = r.substr(0, end + 2);
  auto body = r.substr(end + 4);
  if (r.substr(0, 12) == "HTTP/1.1 101")
    return check_frames(body);
  if (head.find("\r\nContent-Type: application/json\r\n")
      == std::string_view::npos)
    return;
  constexpr std::string_view length_field = "\r\nContent-Length: ";
  auto at = head.find(length_field);
  if (at == std::string_view::npos)
    fail("a JSON response without Content-Length", r);
  auto length = std::strtoull(head.data() + at + length_field.size(), nullptr,
                              10);
  if (body.size() < length)
    return;
  if (!livehub::fuzz::strict_json::object(body.substr(0, length)))
    fail("the server answered with a JSON body that is no JSON object", r);
}

/// An HTTP/1.1 request for `target` with `body`.
std::string http_request(bool post, std::string_view target,
                         std::string_view body) {
  std::string req = post ? "POST " : "GET ";
  req += target;
  req += " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(the_server->port)
    + "\r\n";
  if (post)
    req += "Content-Type: application/json\r\n";
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  req += body;
  return req;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  the_server = new served;
  std::atexit([] {
    the_server->stop();
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  auto mode = data[0] % 4;
  bool flag = (data[0] & 0x10) != 0;
  // Bit 0x20: wait for the server's answers before half-closing (the
  // client actor answers after the frames were read).
  auto idle = (data[0] & 0x20) != 0 ? answer_time : milliseconds{0};
  std::string_view rest{reinterpret_cast<const char*>(data) + 1, size - 1};
  connection con{the_server->port};
  switch (mode) {
    case 0:
    case 1: {
      con.upgrade(flag);
      auto stream = mode == 0 ? masked_frames(rest) : std::string{rest};
      con.send(stream);
      con.finish(idle);
      check_frames(con.received());
      break;
    }
    case 2:
      con.send(rest);
      con.finish(idle);
      check_http(con.received());
      break;
    case 3: {
      auto nl = rest.find('\n');
      auto target = rest.substr(0, nl);
      auto body = nl == std::string_view::npos ? std::string_view{}
                                               : rest.substr(nl + 1);
      con.send(http_request(flag, target, body));
      con.finish(idle);
      check_http(con.received());
      break;
    }
  }
  // Replaying an input with LIVEHUB_FUZZ_WS_SHOW=1 shows what came back.
  if (std::getenv("LIVEHUB_FUZZ_WS_SHOW")) {
    std::fprintf(stderr, "fuzz_ws: the server sent %zu bytes:\n",
                 con.received().size());
    for (unsigned char c : con.received())
      std::fprintf(stderr, c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x", c);
    std::fprintf(stderr, "\n");
  }
  return 0;
}

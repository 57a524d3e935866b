// The blocking test client of ws_client.hpp: non-blocking sockets driven by
// poll() against a deadline, so no call waits longer than its timeout; TLS
// through OpenSSL on the same non-blocking sockets.
#include "support/ws_client.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace livehub::test {

namespace {

using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;

/// Outcome of one bounded read.
enum class read_result { data, timeout, ended };

/// Waits until `fd` is ready for `events` or `deadline` passed.
bool wait_ready(int fd, short events, time_point deadline) {
  for (;;) {
    auto left
      = std::chrono::duration_cast<milliseconds>(deadline - clock_type::now());
    pollfd pfd{fd, events, 0};
    auto n = ::poll(&pfd, 1,
                    static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (n > 0)
      return true;
    if (n == 0 || errno != EINTR)
      return false;
  }
}

/// Connects a non-blocking socket to 127.0.0.1:`port`; -1 on failure.
int connect_loopback(uint16_t port, int receive_buffer, time_point deadline) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (receive_buffer > 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer,
                 sizeof(receive_buffer));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0)
    return fd;
  int err = 0;
  socklen_t len = sizeof(err);
  if (errno == EINPROGRESS && wait_ready(fd, POLLOUT, deadline)
      && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
    return fd;
  ::close(fd);
  return -1;
}

/// A connected socket and, over it, a TLS session or none.
struct link {
  int fd = -1;
  SSL* ssl = nullptr;
};

/// OpenSSL's oldest queued error as text, and clears the queue.
std::string openssl_error() {
  auto code = ERR_get_error();
  ERR_clear_error();
  if (code == 0)
    return "no OpenSSL error queued";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

/// Waits for what a TLS call that returned `ret` asks for; false when it
/// failed for good or `deadline` passed.
bool tls_retry(const link& c, int ret, time_point deadline) {
  switch (SSL_get_error(c.ssl, ret)) {
    case SSL_ERROR_WANT_READ: return wait_ready(c.fd, POLLIN, deadline);
    case SSL_ERROR_WANT_WRITE: return wait_ready(c.fd, POLLOUT, deadline);
    default: return false;
  }
}

/// Starts TLS on the connected socket `fd` and completes the handshake
/// before `deadline`, verifying the server as `opts` says. nullptr and the
/// reason in `error` on failure.
SSL* start_tls(int fd, const tls_options& opts, time_point deadline,
               std::string& error) {
  // OpenSSL writes the socket with write(2): a server that closed must not
  // kill the test with SIGPIPE.
  static const bool sigpipe_ignored = [] {
    std::signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)sigpipe_ignored;
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx{
    SSL_CTX_new(TLS_client_method()), SSL_CTX_free};
  if (!ctx) {
    error = "SSL_CTX_new: " + openssl_error();
    return nullptr;
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!opts.ca_file.empty()
      && SSL_CTX_load_verify_locations(ctx.get(), opts.ca_file.c_str(), nullptr)
        != 1) {
    error = "cannot load " + opts.ca_file + ": " + openssl_error();
    return nullptr;
  }
  if (opts.max_version != 0 && opts.max_version < TLS1_2_VERSION) {
    // Debian's default security level forbids TLS 1.0 and 1.1 on the
    // client's side already; allow them, so that the server must refuse.
    SSL_CTX_set_security_level(ctx.get(), 0);
    SSL_CTX_set_cipher_list(ctx.get(), "DEFAULT:@SECLEVEL=0");
  }
  if (opts.min_version != 0)
    SSL_CTX_set_min_proto_version(ctx.get(), opts.min_version);
  if (opts.max_version != 0)
    SSL_CTX_set_max_proto_version(ctx.get(), opts.max_version);
  link c{fd, SSL_new(ctx.get())};
  if (!c.ssl) {
    error = "SSL_new: " + openssl_error();
    return nullptr;
  }
  // The certificate must be for expected_host: an IP address is checked
  // against the IP entries of subjectAltName, a name against the DNS ones.
  auto* param = SSL_get0_param(c.ssl);
  if (X509_VERIFY_PARAM_set1_ip_asc(param, opts.expected_host.c_str()) != 1) {
    ERR_clear_error();
    SSL_set_tlsext_host_name(c.ssl, opts.expected_host.c_str());
    SSL_set1_host(c.ssl, opts.expected_host.c_str());
  }
  SSL_set_fd(c.ssl, fd);
  for (;;) {
    ERR_clear_error();
    auto ret = SSL_connect(c.ssl);
    if (ret == 1)
      return c.ssl;
    if (tls_retry(c, ret, deadline))
      continue;
    auto verdict = SSL_get_verify_result(c.ssl);
    error = ERR_peek_error() != 0 ? openssl_error()
                                  : std::string{"no handshake in time, or "
                                                "the server ended it"};
    if (verdict != X509_V_OK)
      error += std::string{" ("} + X509_verify_cert_error_string(verdict) + ")";
    SSL_free(c.ssl);
    return nullptr;
  }
}

/// Writes all of `bytes` to `c` before `deadline`.
bool write_all(const link& c, std::string_view bytes, time_point deadline) {
  while (!bytes.empty()) {
    if (c.ssl) {
      size_t n = 0;
      ERR_clear_error();
      auto ret = SSL_write_ex(c.ssl, bytes.data(), bytes.size(), &n);
      if (ret == 1)
        bytes.remove_prefix(n);
      else if (!tls_retry(c, ret, deadline)) // same bytes again after it
        return false;
      continue;
    }
    auto n = ::send(c.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_ready(c.fd, POLLOUT, deadline))
        return false;
    } else {
      return false;
    }
  }
  return true;
}

/// Appends what `c` has (waiting until `deadline`) to `buf`.
read_result read_some(const link& c, std::string& buf, time_point deadline) {
  char chunk[16384];
  for (;;) {
    if (c.ssl) {
      size_t n = 0;
      ERR_clear_error();
      auto ret = SSL_read_ex(c.ssl, chunk, sizeof(chunk), &n);
      if (ret == 1) {
        buf.append(chunk, n);
        return read_result::data;
      }
      auto err = SSL_get_error(c.ssl, ret);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return read_result::ended;
      }
      if (!tls_retry(c, ret, deadline))
        return read_result::timeout;
      continue;
    }
    auto n = ::recv(c.fd, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buf.append(chunk, static_cast<size_t>(n));
      return read_result::data;
    }
    if (n == 0)
      return read_result::ended;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return read_result::ended;
    if (!wait_ready(c.fd, POLLIN, deadline))
      return read_result::timeout;
  }
}

/// Reads up to the end of an HTTP head into `head`, leaving what follows it
/// in `rest`. Returns the status code, 0 when no full head arrived in time.
int read_http_head(const link& c, time_point deadline, std::string& head,
                   std::string& rest) {
  std::string buf;
  size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos)
    if (read_some(c, buf, deadline) != read_result::data)
      return 0;
  head = buf.substr(0, end + 4);
  rest = buf.substr(end + 4);
  // Status line: "HTTP/1.1 101 Switching Protocols".
  auto sp = head.find(' ');
  if (head.compare(0, 5, "HTTP/") != 0 || sp == std::string::npos)
    return 0;
  return std::atoi(head.c_str() + sp + 1);
}

/// "GET /path HTTP/1.1" plus Host and `headers`, without the final CRLF.
std::string request_head(uint16_t port, std::string_view method,
                         std::string_view path, const header_list& headers) {
  std::string out;
  out.append(method).append(" ").append(path).append(" HTTP/1.1\r\n");
  auto has_host = std::any_of(headers.begin(), headers.end(), [](auto& kv) {
    return strcasecmp(kv.first.c_str(), "Host") == 0;
  });
  if (!has_host)
    out += "Host: 127.0.0.1:" + std::to_string(port) + "\r\n";
  for (auto& [name, value] : headers)
    out += name + ": " + value + "\r\n";
  return out;
}

/// One parsed frame.
struct frame {
  bool fin = true;
  uint8_t opcode = 0;
  std::string payload;
};

/// Takes one complete frame off the front of `in`; false when incomplete.
bool take_frame(std::string& in, frame& out) {
  auto byte = [&](size_t i) {
    return static_cast<uint8_t>(in[i]);
  };
  if (in.size() < 2)
    return false;
  size_t pos = 2;
  uint64_t len = byte(1) & 0x7F;
  bool masked = (byte(1) & 0x80) != 0;
  size_t ext = len == 126 ? 2 : len == 127 ? 8 : 0;
  if (in.size() < pos + ext)
    return false;
  if (ext > 0) {
    len = 0;
    for (size_t i = 0; i < ext; ++i)
      len = (len << 8) | byte(pos + i);
    pos += ext;
  }
  size_t mask_at = pos;
  if (masked)
    pos += 4;
  if (in.size() < pos + len)
    return false;
  out.fin = (byte(0) & 0x80) != 0;
  out.opcode = byte(0) & 0x0F;
  out.payload = in.substr(pos, len);
  if (masked) // Servers do not mask, but a test client can afford tolerance.
    for (size_t i = 0; i < out.payload.size(); ++i)
      out.payload[i] = static_cast<char>(out.payload[i] ^ in[mask_at + i % 4]);
  in.erase(0, pos + len);
  return true;
}

} // namespace

const char* to_string(ws_kind x) {
  switch (x) {
    case ws_kind::text: return "text";
    case ws_kind::binary: return "binary";
    case ws_kind::close: return "close";
    case ws_kind::timeout: return "timeout";
    default: return "ended";
  }
}

std::string ws_message::describe() const {
  std::string out = to_string(kind);
  if (kind == ws_kind::close)
    out += " " + std::to_string(close_code);
  if (!data.empty())
    out += " '" + (data.size() > 200 ? data.substr(0, 200) + "..." : data)
      + "'";
  return out;
}

// -- ws_client ----------------------------------------------------------------

ws_client::ws_client(uint16_t port, ws_options opts) : opts_(std::move(opts)) {
  auto deadline = clock_type::now() + opts_.connect_timeout;
  if (opts_.socket >= 0) {
    fd_ = std::exchange(opts_.socket, -1);
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  } else {
    fd_ = connect_loopback(port, opts_.receive_buffer, deadline);
  }
  if (fd_ >= 0 && opts_.tls) {
    ssl_ = start_tls(fd_, *opts_.tls, deadline, tls_error_);
    if (!ssl_) {
      drop();
      return;
    }
  }
  // A fixed key: the client does not check Sec-WebSocket-Accept anyway.
  auto req = request_head(port, "GET", opts_.path, opts_.headers)
    + "Upgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  link c{fd_, ssl_};
  if (fd_ >= 0 && livehub::test::write_all(c, req, deadline))
    status_ = read_http_head(c, deadline, response_head_, in_);
  ended_ = status_ != 101;
}

ws_client::ws_client(ws_client&& other) noexcept {
  *this = std::move(other);
}

ws_client& ws_client::operator=(ws_client&& other) noexcept {
  if (this != &other) {
    drop();
    fd_ = std::exchange(other.fd_, -1);
    ssl_ = std::exchange(other.ssl_, nullptr);
    status_ = other.status_;
    ended_ = other.ended_;
    close_sent_ = other.close_sent_;
    opts_ = std::move(other.opts_);
    response_head_ = std::move(other.response_head_);
    tls_error_ = std::move(other.tls_error_);
    in_ = std::move(other.in_);
    partial_ = std::move(other.partial_);
    partial_op_ = other.partial_op_;
    mask_seed_ = other.mask_seed_;
  }
  return *this;
}

ws_client::~ws_client() {
  drop();
}

void ws_client::drop() {
  SSL_free(ssl_);
  ssl_ = nullptr;
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
  ended_ = true;
}

bool ws_client::write_all(std::string_view bytes, time_point deadline) {
  if (fd_ < 0)
    return false;
  return livehub::test::write_all(link{fd_, ssl_}, bytes, deadline);
}

bool ws_client::fill(time_point deadline) {
  if (fd_ < 0 || ended_)
    return false;
  auto res = read_some(link{fd_, ssl_}, in_, deadline);
  if (res == read_result::ended)
    ended_ = true;
  return res == read_result::data;
}

void ws_client::append_frame(std::string& out, uint8_t opcode,
                             std::string_view payload, bool fin) {
  out += static_cast<char>((fin ? 0x80 : 0x00) | (opcode & 0x0F));
  auto len = payload.size();
  if (len < 126) {
    out += static_cast<char>(0x80 | len);
  } else if (len <= 0xFFFF) {
    out += static_cast<char>(0x80 | 126);
    out += static_cast<char>(len >> 8);
    out += static_cast<char>(len & 0xFF);
  } else {
    out += static_cast<char>(0x80 | 127);
    for (int shift = 56; shift >= 0; shift -= 8)
      out += static_cast<char>((static_cast<uint64_t>(len) >> shift) & 0xFF);
  }
  // A cheap xorshift mask: RFC 6455 wants masking, not cryptography here.
  mask_seed_ ^= mask_seed_ << 13;
  mask_seed_ ^= mask_seed_ >> 17;
  mask_seed_ ^= mask_seed_ << 5;
  char mask[4];
  std::memcpy(mask, &mask_seed_, 4);
  out.append(mask, 4);
  for (size_t i = 0; i < len; ++i)
    out += static_cast<char>(payload[i] ^ mask[i % 4]);
}

bool ws_client::send_frame(uint8_t opcode, std::string_view payload, bool fin,
                           milliseconds timeout) {
  std::string out;
  out.reserve(payload.size() + 14);
  append_frame(out, opcode, payload, fin);
  return write_all(out, clock_type::now() + timeout);
}

bool ws_client::send_texts(std::string_view payload, size_t count,
                           milliseconds timeout) {
  std::string out;
  out.reserve((payload.size() + 14) * count);
  for (size_t i = 0; i < count; ++i)
    append_frame(out, 0x1, payload, true);
  return write_all(out, clock_type::now() + timeout);
}

bool ws_client::send_text(std::string_view payload, size_t fragment_size,
                          milliseconds timeout) {
  if (fragment_size == 0 || payload.size() <= fragment_size)
    return send_frame(0x1, payload, true, timeout);
  uint8_t opcode = 0x1;
  while (!payload.empty()) {
    auto part = payload.substr(0, fragment_size);
    payload.remove_prefix(part.size());
    if (!send_frame(opcode, part, payload.empty(), timeout))
      return false;
    opcode = 0x0; // every later frame is a continuation
  }
  return true;
}

bool ws_client::send_close(uint16_t code, std::string_view reason) {
  if (close_sent_)
    return true;
  close_sent_ = true;
  std::string payload;
  payload += static_cast<char>(code >> 8);
  payload += static_cast<char>(code & 0xFF);
  payload.append(reason);
  return send_frame(0x8, payload, true, milliseconds{1000});
}

ws_message ws_client::receive(milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  for (;;) {
    frame f;
    while (take_frame(in_, f)) {
      switch (f.opcode) {
        case 0x9: // ping
          if (opts_.auto_pong && !close_sent_)
            send_frame(0xA, f.payload, true, milliseconds{1000});
          continue;
        case 0xA: // pong
          continue;
        case 0x8: { // close: echo it once, completing the handshake
          ws_message msg{ws_kind::close, {}, 0};
          if (f.payload.size() >= 2) {
            msg.close_code
              = static_cast<uint16_t>((static_cast<uint8_t>(f.payload[0]) << 8)
                                      | static_cast<uint8_t>(f.payload[1]));
            msg.data = f.payload.substr(2);
          }
          send_close(msg.close_code != 0 ? msg.close_code : 1000);
          return msg;
        }
        case 0x0: // continuation
          partial_ += f.payload;
          break;
        default: // text, binary (first frame of a message)
          partial_op_ = f.opcode;
          partial_ = std::move(f.payload);
      }
      if (f.fin) {
        auto kind = partial_op_ == 0x2 ? ws_kind::binary : ws_kind::text;
        return ws_message{kind, std::exchange(partial_, {}), 0};
      }
    }
    if (!fill(deadline))
      return ws_message{ended_ ? ws_kind::ended : ws_kind::timeout, {}, 0};
  }
}

ws_message ws_client::close(uint16_t code, milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  send_close(code);
  ws_message msg;
  while (!ended_ && clock_type::now() < deadline) {
    msg = receive(
      std::chrono::duration_cast<milliseconds>(deadline - clock_type::now()));
    if (msg.kind == ws_kind::close || msg.kind == ws_kind::ended)
      break;
  }
  drop();
  return msg;
}

// -- http_request -------------------------------------------------------------

namespace {

/// The header lines of `head` (after its status line, "Name: value") into
/// `out.headers`, names in lower case.
void parse_headers(const std::string& head, http_response& out) {
  for (size_t pos = head.find("\r\n"); pos + 2 < head.size();) {
    auto eol = head.find("\r\n", pos + 2);
    auto line = head.substr(pos + 2, eol - pos - 2);
    pos = eol;
    auto colon = line.find(':');
    if (colon == std::string::npos)
      continue;
    auto name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) {
      return std::tolower(c);
    });
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    out.headers[name] = value;
  }
}

/// http_request() and https_request(): `tls` nullptr for plain HTTP.
http_response request(uint16_t port, const tls_options* tls,
                      std::string_view method, std::string_view path,
                      const header_list& headers, std::string_view body,
                      milliseconds timeout) {
  http_response result;
  auto deadline = clock_type::now() + timeout;
  link c{connect_loopback(port, 0, deadline), nullptr};
  if (c.fd < 0)
    return result;
  if (tls) {
    c.ssl = start_tls(c.fd, *tls, deadline, result.tls_error);
    if (!c.ssl) {
      ::close(c.fd);
      return result;
    }
  }
  auto req = request_head(port, method, path, headers) + "Content-Length: "
    + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  req.append(body);
  std::string head;
  int status = 0;
  if (write_all(c, req, deadline))
    status = read_http_head(c, deadline, head, result.body);
  if (status != 0)
    parse_headers(head, result);
  // Body: Content-Length bytes, or whatever arrives until the server closes.
  auto cl = result.headers.find("content-length");
  size_t want = cl != result.headers.end() ? std::stoul(cl->second)
                                           : std::string::npos;
  read_result res = read_result::data;
  while (status != 0 && result.body.size() < want
         && (res = read_some(c, result.body, deadline)) == read_result::data)
    ; // keep reading
  SSL_free(c.ssl);
  ::close(c.fd);
  bool complete = want == std::string::npos ? res == read_result::ended
                                            : result.body.size() >= want;
  if (status != 0 && complete) {
    result.status = status;
    if (want != std::string::npos)
      result.body.resize(want);
  }
  return result;
}

} // namespace

http_response http_request(uint16_t port, std::string_view method,
                           std::string_view path, const header_list& headers,
                           std::string_view body, milliseconds timeout) {
  return request(port, nullptr, method, path, headers, body, timeout);
}

// -- http_connection ----------------------------------------------------------

http_connection::http_connection(uint16_t port, const tls_options* tls,
                                 milliseconds timeout)
  : port_(port) {
  auto deadline = clock_type::now() + timeout;
  fd_ = connect_loopback(port, 0, deadline);
  if (fd_ >= 0 && tls) {
    std::string error;
    ssl_ = start_tls(fd_, *tls, deadline, error);
    if (!ssl_) {
      ::close(fd_);
      fd_ = -1;
    }
  }
}

http_connection::~http_connection() {
  SSL_free(ssl_);
  if (fd_ >= 0)
    ::close(fd_);
}

std::string
http_connection::request(std::string_view method, std::string_view path,
                         std::string_view body, const header_list& headers,
                         std::string_view version) const {
  auto out = request_head(port_, method, path, headers);
  // request_head writes HTTP/1.1.
  out.replace(out.find(" HTTP/1.1\r\n") + 1, 8, version);
  if (!body.empty())
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "\r\n";
  out.append(body);
  return out;
}

bool http_connection::send(std::string_view bytes, milliseconds timeout) {
  return fd_ >= 0
    && write_all(link{fd_, ssl_}, bytes, clock_type::now() + timeout);
}

http_response http_connection::read_response(milliseconds timeout) {
  http_response result;
  auto deadline = clock_type::now() + timeout;
  link c{fd_, ssl_};
  size_t end;
  while (fd_ >= 0 && (end = in_.find("\r\n\r\n")) == std::string::npos)
    if (read_some(c, in_, deadline) != read_result::data)
      return result;
  if (fd_ < 0)
    return result;
  auto head = in_.substr(0, end + 4);
  in_.erase(0, end + 4);
  auto sp = head.find(' ');
  if (head.compare(0, 5, "HTTP/") != 0 || sp == std::string::npos)
    return result;
  parse_headers(head, result);
  auto status = std::atoi(head.c_str() + sp + 1);
  auto cl = result.headers.find("content-length");
  if (status < 200 || status == 204 || status == 304) {
    // No body, whatever the headers say.
  } else if (cl != result.headers.end()) {
    auto want = std::stoul(cl->second);
    while (in_.size() < want)
      if (read_some(c, in_, deadline) != read_result::data)
        return result;
    result.body = in_.substr(0, want);
    in_.erase(0, want);
  } else {
    read_result res;
    while ((res = read_some(c, in_, deadline)) == read_result::data)
      ; // up to the end of the connection
    if (res != read_result::ended)
      return result;
    ended_ = true;
    result.body = std::move(in_);
    in_.clear();
  }
  result.status = status;
  return result;
}

bool http_connection::ends(milliseconds timeout) {
  if (fd_ < 0 || !in_.empty())
    return false;
  std::string more;
  auto res = read_some(link{fd_, ssl_}, more, clock_type::now() + timeout);
  in_ += more;
  if (res == read_result::ended)
    ended_ = true;
  return res == read_result::ended && more.empty();
}

int http_connection::release() {
  if (ssl_)
    return -1;
  return std::exchange(fd_, -1);
}

http_response https_request(uint16_t port, const tls_options& tls,
                            std::string_view method, std::string_view path,
                            const header_list& headers, std::string_view body,
                            milliseconds timeout) {
  return request(port, &tls, method, path, headers, body, timeout);
}

} // namespace livehub::test

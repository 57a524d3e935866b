// A small blocking WebSocket and HTTP/1.1 test client on plain POSIX sockets,
// with TLS through OpenSSL when asked (verifying the server's certificate as
// a real client does). Every call is bounded by a timeout, so a test never
// hangs on a server that misbehaves: it gets a `timeout` or `ended` result
// and fails clearly.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct ssl_st;

namespace livehub::test {

using std::chrono::milliseconds;

/// Extra request headers, e.g. `{{"Origin", "http://evil.example"}}`.
using header_list = std::vector<std::pair<std::string, std::string>>;

/// How a client speaks TLS: it verifies the server's certificate chain
/// against `ca_file` and the certificate's name against `expected_host`,
/// and fails the handshake otherwise.
struct tls_options {
  /// PEM file of the certificate authorities to trust; empty trusts none.
  std::string ca_file;

  /// The IP address or DNS name the certificate must be for.
  std::string expected_host = "127.0.0.1";

  /// Lowest and highest protocol version offered (OpenSSL's constants, e.g.
  /// TLS1_1_VERSION); 0 leaves OpenSSL's default. Offering a version below
  /// TLS 1.2 also lowers the client's own security level so that it can.
  int min_version = 0;
  int max_version = 0;
};

/// How a ws_client connects.
struct ws_options {
  /// The request path of the upgrade.
  std::string path = "/ws";

  /// Extra headers of the upgrade request. A `Host` header given here
  /// replaces the default `127.0.0.1:PORT`.
  header_list headers;

  /// SO_RCVBUF in bytes, set before connecting; 0 keeps the system default.
  /// A small value makes a client that never reads back up the server fast.
  int receive_buffer = 0;

  /// Whether receive() answers server pings with pongs.
  bool auto_pong = true;

  /// Bound of connecting and of the upgrade handshake (TLS included).
  milliseconds connect_timeout{5000};

  /// Speak TLS (wss://) with these settings; nullptr: plain TCP (ws://).
  const tls_options* tls = nullptr;

  /// A plain TCP socket already connected to the server (e.g. one that
  /// carried HTTP requests first, see http_connection::release()) to send
  /// the upgrade on; the client takes it over. -1: connect a new one.
  int socket = -1;
};

/// What receive() returns.
enum class ws_kind {
  text,    ///< a text message; `data` holds its payload
  binary,  ///< a binary message; `data` holds its payload
  close,   ///< a close frame; `close_code` (0: none given) and `data` (reason)
  timeout, ///< nothing complete arrived in time
  ended,   ///< the socket closed or failed without a close frame
};

/// The name of `x`, e.g. "close".
const char* to_string(ws_kind x);

/// Lets doctest print a ws_kind in failed assertions.
inline std::ostream& operator<<(std::ostream& out, ws_kind x) {
  return out << to_string(x);
}

/// One received message (reassembled from its fragments) or outcome.
struct ws_message {
  ws_kind kind = ws_kind::timeout;
  std::string data;
  uint16_t close_code = 0;

  /// A one-line description for failure messages.
  std::string describe() const;
};

/// A blocking WebSocket client of a server on 127.0.0.1. Not thread-safe:
/// use one client per thread. Frames it sends are masked, as RFC 6455 asks.
class ws_client {
 public:
  /// Connects to 127.0.0.1:`port` and sends the upgrade request. Check
  /// status(): 101 on success, the HTTP status otherwise (0: no response).
  explicit ws_client(uint16_t port, ws_options opts = {});

  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;
  ws_client(ws_client&& other) noexcept;
  ws_client& operator=(ws_client&& other) noexcept;

  /// Closes the socket (without a close handshake).
  ~ws_client();

  /// The HTTP status of the upgrade response (0 when none arrived).
  int status() const noexcept {
    return status_;
  }

  /// The raw header block of the upgrade response.
  const std::string& response_head() const noexcept {
    return response_head_;
  }

  /// Why the TLS handshake failed, e.g. "certificate verify failed (...)";
  /// empty when it succeeded or was not attempted.
  const std::string& tls_error() const noexcept {
    return tls_error_;
  }

  /// True after a successful upgrade until the socket ended.
  bool is_open() const noexcept {
    return fd_ >= 0 && status_ == 101 && !ended_;
  }

  /// Turns automatic pong replies to server pings on or off.
  void set_auto_pong(bool value) noexcept {
    opts_.auto_pong = value;
  }

  /// Sends `payload` as one text message; when `fragment_size` > 0, as
  /// several frames of at most that many bytes each. Returns false when the
  /// socket failed or the data could not be written within `timeout`.
  bool send_text(std::string_view payload, size_t fragment_size = 0,
                 milliseconds timeout = milliseconds{5000});

  /// Sends `count` text messages `payload` in one write (as a client
  /// that pipelines commands would).
  bool send_texts(std::string_view payload, size_t count,
                  milliseconds timeout = milliseconds{5000});

  /// Sends one masked frame with `opcode` (0x0 continuation, 0x1 text, 0x2
  /// binary, 0x8 close, 0x9 ping, 0xA pong) and the FIN bit `fin`.
  bool send_frame(uint8_t opcode, std::string_view payload, bool fin = true,
                  milliseconds timeout = milliseconds{5000});

  /// Sends a close frame with `code` and `reason` (once; later calls do
  /// nothing and return true).
  bool send_close(uint16_t code = 1000, std::string_view reason = {});

  /// Returns the next message, close frame or outcome within `timeout`.
  /// Pings are answered (see set_auto_pong) and pongs skipped; a received
  /// close frame is echoed once, completing the close handshake.
  ws_message receive(milliseconds timeout = milliseconds{5000});

  /// Sends a close frame, waits up to `timeout` for the server's close frame
  /// or the end of the connection, then closes the socket. Returns the
  /// server's close frame, or what ended the wait.
  ws_message close(uint16_t code = 1000,
                   milliseconds timeout = milliseconds{2000});

  /// Closes the socket at once, without a close frame.
  void drop();

 private:
  /// Appends whatever arrives within `deadline` to `in_`; false on timeout
  /// (nothing read) or when the socket ended (sets `ended_`).
  bool fill(std::chrono::steady_clock::time_point deadline);

  /// Appends one masked frame to `out`.
  void append_frame(std::string& out, uint8_t opcode, std::string_view payload,
                    bool fin);

  /// Writes all of `bytes` before `deadline`.
  bool write_all(std::string_view bytes,
                 std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  /// The TLS session over fd_ (nullptr: plain TCP).
  ssl_st* ssl_ = nullptr;
  int status_ = 0;
  bool ended_ = false;
  bool close_sent_ = false;
  ws_options opts_;
  std::string response_head_;
  std::string tls_error_;
  std::string in_;      // received bytes not yet parsed
  std::string partial_; // payload of a fragmented message so far
  uint8_t partial_op_ = 0;
  uint32_t mask_seed_ = 0x9e3779b9;
};

/// The response of http_request().
struct http_response {
  /// The status code; 0 when no complete response arrived in time.
  int status = 0;
  /// Header names in lower case.
  std::map<std::string, std::string> headers;
  std::string body;
  /// Why the TLS handshake failed (https_request only).
  std::string tls_error;
};

/// Sends one HTTP/1.1 request to 127.0.0.1:`port` (with `Host`,
/// `Content-Length` and `Connection: close` added) and reads the response:
/// `Content-Length` bytes of body, or up to the end of the connection.
http_response http_request(uint16_t port, std::string_view method,
                           std::string_view path, const header_list& headers,
                           std::string_view body = {},
                           milliseconds timeout = milliseconds{5000});

/// One HTTP/1.1 connection to 127.0.0.1 that stays open across requests
/// (keep-alive), plain or over TLS: send() writes raw bytes (one request,
/// several pipelined ones, or part of one), read_response() reads the next
/// response. Not thread-safe.
class http_connection {
 public:
  /// Connects to 127.0.0.1:`port` (and completes the TLS handshake when
  /// `tls` is given); check is_open().
  explicit http_connection(uint16_t port, const tls_options* tls = nullptr,
                           milliseconds timeout = milliseconds{5000});

  http_connection(const http_connection&) = delete;
  http_connection& operator=(const http_connection&) = delete;

  ~http_connection();

  /// True while connected and not seen ended.
  bool is_open() const noexcept {
    return fd_ >= 0 && !ended_;
  }

  /// The text of one request to this server: `method` `path` `version`, a
  /// Host header, `headers`, and Content-Length when there is a body.
  std::string request(std::string_view method, std::string_view path,
                      std::string_view body = {},
                      const header_list& headers = {},
                      std::string_view version = "HTTP/1.1") const;

  /// Writes `bytes` as they are, in one call; false when the socket failed.
  bool send(std::string_view bytes, milliseconds timeout = milliseconds{5000});

  /// The next response: its head, then Content-Length bytes of body, or,
  /// without Content-Length, whatever arrives until the server closes (no
  /// body for 1xx, 204 and 304).
  /// Status 0 when no complete response arrived within `timeout`.
  http_response read_response(milliseconds timeout = milliseconds{5000});

  /// True when the server ends the connection (end of stream, or a reset)
  /// within `timeout` with no further byte; false on a byte or a timeout.
  bool ends(milliseconds timeout = milliseconds{5000});

  /// Hands the (plain TCP) socket over, e.g. to a ws_client; this object is
  /// then closed. -1 when it holds none or speaks TLS.
  int release();

 private:
  uint16_t port_;
  int fd_ = -1;
  ssl_st* ssl_ = nullptr;
  bool ended_ = false;
  std::string in_; // received bytes not yet part of a response read
};

/// http_request() over TLS (https://), verifying the server as `tls` says.
http_response https_request(uint16_t port, const tls_options& tls,
                            std::string_view method, std::string_view path,
                            const header_list& headers,
                            std::string_view body = {},
                            milliseconds timeout = milliseconds{5000});

} // namespace livehub::test

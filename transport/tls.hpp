// TLS for livehub's own transport (lean_transport.hpp): the server's OpenSSL
// context, built from `livehub.tls-cert-file` and `livehub.tls-key-file`, and
// one session per connection that OpenSSL drives straight over the
// connection's non-blocking socket.
//
// Why not asio::ssl::stream: it puts a BIO pair between OpenSSL and the
// socket and keeps two record-sized buffers of its own, busy or idle:
// measured here (Asio 1.22, OpenSSL 3.0), 79,127 bytes of heap per stream
// before a byte moved, against 8,520 for the SSL object alone. Here OpenSSL
// reads and writes the socket itself through a small BIO (recv and send with
// MSG_NOSIGNAL, so a peer that vanished raises no SIGPIPE in the host
// application), and SSL_MODE_RELEASE_BUFFERS lets an idle session hold no
// record buffers at all. The transport keeps its own reactor pattern: try the
// operation, and wait for the socket only when OpenSSL asks for it.
//
// Internal to livehub::transport; OpenSSL's headers stay in tls.cpp.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include <asio/ip/tcp.hpp>

struct ssl_st;
struct ssl_ctx_st;

namespace livehub::transport::tls {

/// A server's TLS settings (an OpenSSL SSL_CTX): TLS 1.2 and 1.3 only,
/// ECDHE key exchange with AEAD ciphers only, no renegotiation, no
/// compression, and the certificate chain and key of the configured files.
class context {
 public:
  /// Loads `cert_file` (PEM: the certificate, then optionally its chain) and
  /// `key_file` (PEM). Returns nullptr and says why in `error` when they
  /// cannot serve (unreadable, not PEM, a key that does not match).
  static std::shared_ptr<context> make(const std::string& cert_file,
                                       const std::string& key_file,
                                       std::string& error);

  ~context();

  context(const context&) = delete;
  context& operator=(const context&) = delete;

  ssl_ctx_st* native() const noexcept {
    return ctx_;
  }

 private:
  explicit context(ssl_ctx_st* ctx) : ctx_(ctx) {
    // nop
  }

  ssl_ctx_st* ctx_;
};

/// What one non-blocking step of a session did.
enum class result {
  done,       ///< completed (for read and write: some bytes moved)
  want_read,  ///< retry once the socket is readable
  want_write, ///< retry once the socket is writable
  eof,        ///< the peer ended the session (close_notify or end of stream)
  failed,     ///< a TLS or socket error; the session is unusable
};

/// The server side of one TLS session over a TCP socket. An empty session
/// (default-constructed) stands for plain TCP. One thread at a time.
class session {
 public:
  session() = default;

  /// A session over `sock` (which must outlive it, and stay at its address)
  /// with `ctx`'s settings. Empty when OpenSSL is out of memory.
  session(const context& ctx, asio::ip::tcp::socket& sock);

  ~session();

  session(session&& other) noexcept;
  session& operator=(session&& other) noexcept;

  session(const session&) = delete;
  session& operator=(const session&) = delete;

  explicit operator bool() const noexcept {
    return ssl_ != nullptr;
  }

  /// Points the session at `sock`: the socket it runs over, moved to a new
  /// address (a kept HTTP socket that the next connection adopted).
  void rebind(asio::ip::tcp::socket& sock);

  /// True once the handshake completed.
  bool established() const;

  /// Advances the handshake.
  result handshake();

  /// Decrypts up to `len` bytes into `buf`; `n` says how many (`done` only
  /// with n > 0).
  result read(char* buf, size_t len, size_t& n);

  /// True while OpenSSL holds input not yet returned by read() (decrypted,
  /// or read from the socket ahead): read() then needs no system call.
  bool has_pending() const;

  /// Encrypts and sends `len` bytes of `buf`, all or nothing: after
  /// want_read or want_write, call again with the same bytes.
  result write(const char* buf, size_t len, size_t& n);

  /// Sends a close_notify alert if the session is established and sound and
  /// the socket takes it now; never waits for the peer's.
  void close_notify();

 private:
  result outcome(int ret);

  ssl_st* ssl_ = nullptr;
  /// A fatal error happened: OpenSSL must not be asked to shut down.
  bool failed_ = false;
};

} // namespace livehub::transport::tls

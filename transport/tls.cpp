// The server's OpenSSL context and the per-connection sessions of tls.hpp.
#include "transport/tls.hpp"

#include <cerrno>
#include <cstdint>
#include <utility>

#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace livehub::transport::tls {

namespace {

/// TLS 1.2 suites: ECDHE only (forward secrecy), AEAD only (no CBC, no
/// SHA-1 MACs), as Mozilla's "intermediate" profile minus finite-field DHE.
/// TLS 1.3 has only AEAD suites; OpenSSL's default list of them is kept.
constexpr const char* tls12_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:"
                                      "ECDHE-RSA-AES128-GCM-SHA256:"
                                      "ECDHE-ECDSA-AES256-GCM-SHA384:"
                                      "ECDHE-RSA-AES256-GCM-SHA384:"
                                      "ECDHE-ECDSA-CHACHA20-POLY1305:"
                                      "ECDHE-RSA-CHACHA20-POLY1305";

/// OpenSSL's oldest queued error as text ("no start line", ...), and clears
/// the queue.
std::string openssl_error() {
  auto code = ERR_get_error();
  ERR_clear_error();
  if (code == 0)
    return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

// -- the socket BIO -----------------------------------------------------------
//
// OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when the
// peer is gone, and holds a descriptor number that a closed socket may hand
// to someone else. This one asks the Asio socket for its descriptor at each
// call (none once closed) and sends with MSG_NOSIGNAL.

asio::ip::tcp::socket& socket_of(BIO* bio) {
  return *static_cast<asio::ip::tcp::socket*>(BIO_get_data(bio));
}

int bio_read(BIO* bio, char* buf, size_t len, size_t* read) {
  BIO_clear_retry_flags(bio);
  auto& sock = socket_of(bio);
  if (!sock.is_open()) {
    errno = EBADF;
    return 0;
  }
  for (;;) {
    auto n = ::recv(sock.native_handle(), buf, len, 0);
    if (n > 0) {
      *read = static_cast<size_t>(n);
      return 1;
    }
    if (n == 0) {
      BIO_set_flags(bio, BIO_FLAGS_IN_EOF);
      return 0;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      BIO_set_retry_read(bio);
    return 0;
  }
}

int bio_write(BIO* bio, const char* buf, size_t len, size_t* written) {
  BIO_clear_retry_flags(bio);
  auto& sock = socket_of(bio);
  if (!sock.is_open()) {
    errno = EBADF;
    return 0;
  }
  for (;;) {
    auto n = ::send(sock.native_handle(), buf, len, MSG_NOSIGNAL);
    if (n >= 0) {
      *written = static_cast<size_t>(n);
      return 1;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      BIO_set_retry_write(bio);
    return 0;
  }
}

long bio_ctrl(BIO* bio, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH: // every write went to the socket already
      return 1;
    case BIO_CTRL_EOF: // distinguishes a peer's end from an error
      return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    default: return 0;
  }
}

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

/// The method of every session's BIO, made once (and kept for the process).
BIO_METHOD* socket_method() {
  static BIO_METHOD* method = []() -> BIO_METHOD* {
    auto index = BIO_get_new_index();
    if (index == -1)
      return nullptr;
    auto* m = BIO_meth_new(index | BIO_TYPE_SOURCE_SINK, "livehub socket");
    if (m) {
      BIO_meth_set_read_ex(m, bio_read);
      BIO_meth_set_write_ex(m, bio_write);
      BIO_meth_set_ctrl(m, bio_ctrl);
      BIO_meth_set_create(m, bio_create);
    }
    return m;
  }();
  return method;
}

} // namespace

// -- context ------------------------------------------------------------------

std::shared_ptr<context> context::make(const std::string& cert_file,
                                       const std::string& key_file,
                                       std::string& error) {
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx{
    SSL_CTX_new(TLS_server_method()), SSL_CTX_free};
  if (!ctx) {
    error = "cannot create a TLS context: " + openssl_error();
    return nullptr;
  }
  auto* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  uint64_t options = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION;
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
  // A peer that closes TCP without close_notify just ended the stream: the
  // WebSocket and HTTP framing above detect a truncated message anyway.
  options |= SSL_OP_IGNORE_UNEXPECTED_EOF;
#endif
  SSL_CTX_set_options(c, options);
  if (SSL_CTX_set_cipher_list(c, tls12_ciphers) != 1) {
    error = "cannot set the TLS cipher list: " + openssl_error();
    return nullptr;
  }
  // Idle connections dominate: an idle session gives its 16+ KiB read and
  // write buffers back. Read-ahead takes every record the socket holds in
  // one system call (the transport drains them before it waits again).
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(c, 1);
  // Resumption by session tickets only (stateless): no server-side cache
  // growing with every client that ever connected.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_use_certificate_chain_file(c, cert_file.c_str()) != 1) {
    error = "livehub.tls-cert-file \"" + cert_file
      + "\" holds no usable PEM certificate: " + openssl_error();
    return nullptr;
  }
  if (SSL_CTX_use_PrivateKey_file(c, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    // OpenSSL compares the key with the certificate already here.
    auto reason = ERR_GET_REASON(ERR_peek_error());
    if (reason == X509_R_KEY_VALUES_MISMATCH
        || reason == X509_R_KEY_TYPE_MISMATCH)
      error = "livehub.tls-key-file \"" + key_file
        + "\" is not the key of the certificate in \"" + cert_file
        + "\": " + openssl_error();
    else
      error = "livehub.tls-key-file \"" + key_file
        + "\" holds no usable PEM private key: " + openssl_error();
    return nullptr;
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    error = "livehub.tls-key-file \"" + key_file
      + "\" is not the key of the certificate in \"" + cert_file
      + "\": " + openssl_error();
    return nullptr;
  }
  if (!socket_method()) {
    error = "cannot create the TLS socket BIO: " + openssl_error();
    return nullptr;
  }
  return std::shared_ptr<context>{new context(ctx.release())};
}

context::~context() {
  SSL_CTX_free(ctx_);
}

// -- session ------------------------------------------------------------------

session::session(const context& ctx, asio::ip::tcp::socket& sock) {
  ERR_clear_error();
  ssl_ = SSL_new(ctx.native());
  auto* bio = ssl_ ? BIO_new(socket_method()) : nullptr;
  if (!bio) {
    SSL_free(ssl_);
    ssl_ = nullptr;
    ERR_clear_error();
    return;
  }
  BIO_set_data(bio, &sock);
  SSL_set_bio(ssl_, bio, bio); // one reference, owned by the SSL
  SSL_set_accept_state(ssl_);
}

session::~session() {
  SSL_free(ssl_);
}

session::session(session&& other) noexcept
  : ssl_(std::exchange(other.ssl_, nullptr)), failed_(other.failed_) {
  // nop
}

session& session::operator=(session&& other) noexcept {
  if (this != &other) {
    SSL_free(ssl_);
    ssl_ = std::exchange(other.ssl_, nullptr);
    failed_ = other.failed_;
  }
  return *this;
}

void session::rebind(asio::ip::tcp::socket& sock) {
  if (ssl_)
    BIO_set_data(SSL_get_rbio(ssl_), &sock); // one BIO reads and writes
}

bool session::established() const {
  return SSL_is_init_finished(ssl_) == 1;
}

result session::outcome(int ret) {
  switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ: return result::want_read;
    case SSL_ERROR_WANT_WRITE: return result::want_write;
    case SSL_ERROR_ZERO_RETURN: return result::eof;
    default:
      // SSL_ERROR_SSL (a protocol error: garbage, plain text, a refused
      // version, a failed verification) or SSL_ERROR_SYSCALL (the socket).
      failed_ = true;
      ERR_clear_error();
      return result::failed;
  }
}

result session::handshake() {
  ERR_clear_error();
  auto ret = SSL_do_handshake(ssl_);
  return ret == 1 ? result::done : outcome(ret);
}

result session::read(char* buf, size_t len, size_t& n) {
  n = 0;
  ERR_clear_error();
  auto ret = SSL_read_ex(ssl_, buf, len, &n);
  return ret == 1 ? result::done : outcome(ret);
}

bool session::has_pending() const {
  return SSL_has_pending(ssl_) == 1;
}

result session::write(const char* buf, size_t len, size_t& n) {
  n = 0;
  ERR_clear_error();
  auto ret = SSL_write_ex(ssl_, buf, len, &n);
  return ret == 1 ? result::done : outcome(ret);
}

void session::close_notify() {
  if (!ssl_ || failed_ || SSL_is_init_finished(ssl_) != 1)
    return;
  ERR_clear_error();
  SSL_shutdown(ssl_); // queues or sends the alert; we do not wait for the
  ERR_clear_error();  // peer's
}

} // namespace livehub::transport::tls

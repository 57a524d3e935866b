// hub_config: validation and the `livehub.*` CAF options.
#include "livehub/config.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/config_option_adder.hpp>
#include <caf/sec.hpp>

#include <thread>

namespace livehub {

namespace {

caf::error invalid(std::string what) {
  return caf::make_error(caf::sec::invalid_argument,
                         "invalid livehub configuration: " + std::move(what));
}

} // namespace

caf::error hub_config::validate() const {
  using std::chrono::milliseconds;
  if (host.empty())
    return invalid("livehub.host is empty");
  if (path.empty() || path.front() != '/')
    return invalid("livehub.path must start with '/'");
  if (ping_interval < milliseconds(1))
    return invalid("livehub.ping-interval must be at least 1ms");
  if (pong_timeout < milliseconds(1))
    return invalid("livehub.pong-timeout must be at least 1ms");
  if (write_timeout < milliseconds(1))
    return invalid("livehub.write-timeout must be at least 1ms");
  if (max_message_size < 64)
    return invalid("livehub.max-message-size must be at least 64 bytes");
  if (send_queue_limit < 1)
    return invalid("livehub.send-queue-limit must be at least 1");
  if (send_queue_bytes < max_message_size)
    return invalid("livehub.send-queue-bytes must be at least "
                   "livehub.max-message-size");
  if (max_connections < 1)
    return invalid("livehub.max-connections must be at least 1");
  if (max_pending_commands < 1)
    return invalid("livehub.max-pending-commands must be at least 1");
  if (io_threads < 1 || io_threads > 64)
    return invalid("livehub.io-threads must be 1 to 64");
  for (auto& origin : allowed_origins)
    if (origin != "*" && origin.find("://") == std::string::npos)
      return invalid("livehub.allowed-origins entry \"" + origin
                     + "\" is not an origin like https://host:port");
  for (auto& pattern : client_publish)
    if (pattern.empty())
      return invalid("livehub.client-publish has an empty pattern");
  return caf::none;
}

size_t worker_threads(const hub_config& cfg) {
  size_t cores = std::thread::hardware_concurrency();
  return cores > cfg.io_threads ? cores - cfg.io_threads : 1;
}

void add_options(caf::config_option_set& opts) {
  caf::config_option_adder{opts, "livehub"}
    .add<std::string>("host", "address to bind (default 127.0.0.1)")
    .add<uint16_t>("port", "TCP port, 0 picks a free one (default 8080)")
    .add<std::string>("path", "WebSocket path (default /ws)")
    .add<std::string>("web-root", "directory of static files (default none)")
    .add<caf::timespan>("ping-interval", "ping period (default 54s)")
    .add<caf::timespan>("pong-timeout", "close without pong (default 60s)")
    .add<caf::timespan>("write-timeout", "close stalled writes (default 10s)")
    .add<size_t>("max-message-size", "bytes per message (default 524288)")
    .add<size_t>("send-queue-limit", "frames queued per connection (256)")
    .add<size_t>("send-queue-bytes", "bytes queued per connection (16 MiB)")
    .add<size_t>("max-subscriptions", "channels per connection (1024)")
    .add<size_t>("max-connections", "open connections (50000)")
    .add<size_t>("max-pending-commands", "unprocessed commands (64)")
    .add<std::vector<std::string>>("allowed-origins",
                                   "browser origins allowed (default: same)")
    .add<std::string>("api-key", "key for publishing (default: loopback)")
    .add<std::vector<std::string>>("client-publish",
                                   "channel patterns clients may publish to")
    .add<size_t>("io-threads", "WebSocket I/O threads (default 1)");
}

caf::expected<hub_config> read_config(const caf::actor_system_config& cfg) {
  hub_config r;
  r.host = caf::get_or(cfg, "livehub.host", r.host);
  r.port = caf::get_or(cfg, "livehub.port", r.port);
  r.path = caf::get_or(cfg, "livehub.path", r.path);
  r.web_root = caf::get_or(cfg, "livehub.web-root", r.web_root);
  r.ping_interval = caf::get_or(cfg, "livehub.ping-interval", r.ping_interval);
  r.pong_timeout = caf::get_or(cfg, "livehub.pong-timeout", r.pong_timeout);
  r.write_timeout = caf::get_or(cfg, "livehub.write-timeout", r.write_timeout);
  r.max_message_size = caf::get_or(cfg, "livehub.max-message-size",
                                   r.max_message_size);
  r.send_queue_limit = caf::get_or(cfg, "livehub.send-queue-limit",
                                   r.send_queue_limit);
  r.send_queue_bytes = caf::get_or(cfg, "livehub.send-queue-bytes",
                                   r.send_queue_bytes);
  r.max_subscriptions = caf::get_or(cfg, "livehub.max-subscriptions",
                                    r.max_subscriptions);
  r.max_connections = caf::get_or(cfg, "livehub.max-connections",
                                  r.max_connections);
  r.max_pending_commands = caf::get_or(cfg, "livehub.max-pending-commands",
                                       r.max_pending_commands);
  r.allowed_origins = caf::get_or(cfg, "livehub.allowed-origins",
                                  r.allowed_origins);
  r.api_key = caf::get_or(cfg, "livehub.api-key", r.api_key);
  r.client_publish = caf::get_or(cfg, "livehub.client-publish",
                                 r.client_publish);
  r.io_threads = caf::get_or(cfg, "livehub.io-threads", r.io_threads);
  if (auto err = r.validate())
    return err;
  return r;
}

} // namespace livehub

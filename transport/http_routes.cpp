// The plain HTTP requests of the server's port: POST /api/publish,
// GET /api/stats, GET /healthz, static files, and errors for the rest.
#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include "actors/counters.hpp"
#include "actors/fanout.hpp"
#include "actors/routes.hpp"
#include "protocol/codec.hpp"
#include "transport/endpoint.hpp"
#include "transport/http_policy.hpp"

namespace livehub::transport {

namespace {

namespace status = websocketpp::http::status_code;

void respond(const connection_ptr& con, status::value code,
             const std::string& content_type, std::string body) {
  con->set_status(code);
  // What handle_http decided; said in both cases, so that an HTTP/1.0
  // client knows too, and a pooling client never reuses a connection that
  // is about to close.
  con->replace_header("Connection",
                      con->keeps_alive() ? "keep-alive" : "close");
  con->replace_header("Content-Type", content_type);
  con->replace_header("Cache-Control", "no-store");
  con->replace_header("X-Content-Type-Options", "nosniff");
  // set_body writes Content-Length, but none for an empty body: without
  // one, the body of a response would last until the connection closes.
  // (Responses that never have a body, 1xx, 204 and 304, must not say it.)
  bool empty = body.empty();
  con->set_body(std::move(body));
  if (empty && code >= 200 && code != status::no_content
      && code != status::not_modified)
    con->replace_header("Content-Length", "0");
}

void respond_json(const connection_ptr& con, status::value code,
                  std::string body) {
  respond(con, code, "application/json", std::move(body));
}

/// `{"error":MESSAGE,"code":CODE}`: the message for people, the code (one of
/// docs/protocol.md's HTTP error codes) for programs.
void respond_error(const connection_ptr& con, status::value code,
                   std::string_view error_code, std::string_view message) {
  respond_json(con, code,
               "{\"error\":" + codec::quote(message)
                 + ",\"code\":" + codec::quote(error_code) + "}");
}

/// A publish body that is not a publication (or a batch item that is not).
std::string describe(const codec::parse_error& err) {
  return std::string{codec::to_string(err.code)} + ": " + err.message;
}

/// The application's backend: the API key where one is set, else a loopback
/// peer. Answers 401 / 403 and returns false for anyone else.
bool backend_only(server::impl& srv, const connection_ptr& con) {
  auto& cfg = *srv.cfg;
  if (!cfg.api_key.empty()) {
    if (!http_policy::bearer_matches(con->get_request_header("Authorization"),
                                     cfg.api_key)) {
      respond_error(con, status::unauthorized, "unauthorized",
                    "missing or wrong API key (Authorization: Bearer)");
      return false;
    }
  } else if (!is_loopback(con)) {
    respond_error(con, status::forbidden, "forbidden",
                  "no API key is configured: only loopback peers may use "
                  "this endpoint");
    return false;
  }
  return true;
}

void respond_unavailable(const connection_ptr& con) {
  respond_error(con, status::service_unavailable, "unavailable",
                "broker unavailable");
}

/// A publication of event type join or leave on a presence channel: those
/// are livehub's presence events.
bool fake_presence_event(server::impl& srv, const publication& x) {
  return (x.type == "join" || x.type == "leave")
    && is_presence_channel(*srv.shared.cfg, x.channel);
}

/// Publishes every valid item of a batch, in order (so order is kept per
/// channel), and answers per item.
void publish_batch(server::impl& srv, const connection_ptr& con) {
  auto parsed = codec::parse_publish_batch(con->get_request_body());
  if (auto err = std::get_if<codec::parse_error>(&parsed))
    return respond_error(con, status::bad_request, codec::to_string(err->code),
                         describe(*err));
  auto& items = std::get<0>(parsed);
  if (refuse_for_broker(srv.shared))
    return respond_unavailable(con);
  std::string results;
  bool all_ok = true;
  for (auto& item : items) {
    results += results.empty() ? "" : ",";
    if (auto err = std::get_if<codec::parse_error>(&item)) {
      all_ok = false;
      results += "{\"ok\":false,\"error\":" + codec::quote(describe(*err))
        + ",\"code\":" + codec::quote(codec::to_string(err->code)) + "}";
      continue;
    }
    if (fake_presence_event(srv, std::get<publication>(item))) {
      all_ok = false;
      results += "{\"ok\":false,\"error\":\"join and leave are the presence "
                 "events of this channel\",\"code\":\"bad_command\"}";
      continue;
    }
    caf::anon_send(srv.hub, caf::publish_atom::value,
                   std::move(std::get<publication>(item)));
    results += "{\"ok\":true}";
  }
  respond_json(con, status::accepted,
               std::string{"{\"ok\":"} + (all_ok ? "true" : "false")
                 + ",\"results\":[" + results + "]}");
}

void publish(server::impl& srv, const connection_ptr& con) {
  if (!backend_only(srv, con))
    return;
  if (codec::is_batch(con->get_request_body()))
    return publish_batch(srv, con);
  auto parsed = codec::parse_publish(con->get_request_body());
  if (auto err = std::get_if<codec::parse_error>(&parsed))
    return respond_error(con, status::bad_request, codec::to_string(err->code),
                         describe(*err));
  if (fake_presence_event(srv, std::get<publication>(parsed)))
    return respond_error(con, status::bad_request, "bad_command",
                         "join and leave are the presence events of this "
                         "channel");
  if (refuse_for_broker(srv.shared))
    return respond_unavailable(con);
  caf::anon_send(srv.hub, caf::publish_atom::value,
                 std::move(std::get<publication>(parsed)));
  respond_json(con, status::accepted, "{\"ok\":true}");
}

/// Sends `request...` to the hub and answers with `encode(reply)` when the
/// reply arrives (503 if none within 5 s). The asking actor may outlive the
/// server: it holds the connection's weak handle only (see
/// deferred_responses).
template<class Reply, class Encode, class... Request>
void answer_from_hub(server::impl& srv, const connection_ptr& con,
                     Encode encode, Request... request) {
  con->defer_http_response();
  srv.deferred->hold(con);
  auto ask = [encode,
              request...](caf::event_based_actor* self, hub_internal_actor hub,
                          connection_hdl hdl,
                          std::shared_ptr<deferred_responses> deferred) {
    auto finish = [hdl, deferred](status::value code, std::string body) {
      deferred->finish(
        hdl, [code, body = std::move(body)](const connection_ptr& con) mutable {
          // websocketpp throws from set_status once the connection is no
          // longer waiting for its response (it ended meanwhile): nothing is
          // left to answer then.
          try {
            respond_json(con, code, std::move(body));
            websocketpp::lib::error_code ec;
            con->send_http_response(ec);
          } catch (const std::exception&) {
            // nop
          }
        });
    };
    self->request(hub, std::chrono::seconds(5), request...)
      .then(
        [finish, encode](Reply& x) {
          finish(status::ok, encode(x));
        },
        [finish](caf::error&) {
          finish(status::service_unavailable,
                 "{\"error\":\"the hub did not answer\","
                 "\"code\":\"unavailable\"}");
        });
  };
  srv.sys.spawn(ask, srv.hub, connection_hdl{con}, srv.deferred);
}

/// GET /api/stats: the hub's figures.
void stats(server::impl& srv, const connection_ptr& con) {
  answer_from_hub<hub_stats>(
    srv, con,
    [](const hub_stats& x) {
      return codec::encode_stats(x);
    },
    stats_atom::value);
}

/// The `channel` query parameter of a backend's request (see backend_only)
/// naming a channel of a kind (`is_kind`, e.g. is_history_channel, `kind`
/// for the error); none (after answering the error) otherwise.
std::optional<std::string>
backend_channel(server::impl& srv, const connection_ptr& con,
                bool (*is_kind)(const hub_config&, const std::string&),
                const char* kind) {
  if (!backend_only(srv, con))
    return std::nullopt;
  auto channel = http_policy::query_param(con->get_resource(), "channel");
  if (!channel || !codec::valid_channel_name(*channel) || *channel == "*") {
    respond_error(con, status::bad_request, "bad_channel",
                  "give a channel: ?channel=NAME (1 to 255 bytes, "
                  "percent-encoded)");
    return std::nullopt;
  }
  if (!is_kind(*srv.shared.cfg, *channel)) {
    respond_error(con, status::bad_request, "bad_command",
                  std::string{"not a "} + kind + " channel (livehub." + kind
                    + "-channels)");
    return std::nullopt;
  }
  return channel;
}

/// GET /api/history?channel=C&limit=N: the last N publications of a history
/// channel (at most history-size; all of them without limit), oldest first,
/// with its offset and epoch.
void history(server::impl& srv, const connection_ptr& con) {
  auto channel = backend_channel(srv, con, is_history_channel, "history");
  if (!channel)
    return;
  auto& cfg = *srv.shared.cfg;
  uint64_t limit = cfg.history_size;
  if (auto text = http_policy::query_param(con->get_resource(), "limit")) {
    char* end = nullptr;
    auto n = std::strtoull(text->c_str(), &end, 10);
    if (text->empty() || *end != '\0' || (*text)[0] == '-')
      return respond_error(con, status::bad_request, "bad_command",
                           "limit must be a whole number from 0");
    limit = std::min<uint64_t>(n, cfg.history_size);
  }
  auto encode = [](const history_frames& x) {
    return codec::encode_history("", x.frames, x.offset, x.epoch, false);
  };
  if (auto local = read_local_history(srv.shared, *channel, limit, nullptr))
    return respond_json(con, status::ok, encode(*local));
  // Several nodes, and no live mirror here: the hub reads the broker's.
  answer_from_hub<history_frames>(srv, con, encode, history_atom::value,
                                  std::move(*channel), limit, tag_filter_ptr{});
}

/// GET /api/presence?channel=C: who is subscribed to a presence channel.
void presence(server::impl& srv, const connection_ptr& con) {
  auto channel = backend_channel(srv, con, is_presence_channel, "presence");
  if (!channel)
    return;
  answer_from_hub<std::vector<identity>>(
    srv, con,
    [](const std::vector<identity>& clients) {
      return codec::encode_presence("", clients, false);
    },
    presence_atom::value, std::move(*channel));
}

/// Most channels one page of GET /api/channels lists.
constexpr uint64_t max_channel_page = 1000;

/// GET /api/channels?after=NAME&limit=N: the channels with subscribers and
/// their counts, in name order, a page at a time.
void channels(server::impl& srv, const connection_ptr& con) {
  auto& target = con->get_resource();
  auto after = http_policy::query_param(target, "after").value_or("");
  uint64_t limit = 100;
  if (auto text = http_policy::query_param(target, "limit")) {
    char* end = nullptr;
    auto n = std::strtoull(text->c_str(), &end, 10);
    if (text->empty() || *end != '\0' || n < 1 || n > max_channel_page
        || (*text)[0] == '-')
      return respond_error(con, status::bad_request, "bad_command",
                           "limit must be a number from 1 to "
                             + std::to_string(max_channel_page));
    limit = n;
  }
  answer_from_hub<channel_page>(
    srv, con,
    [](const channel_page& page) {
      std::string body = "{\"channels\":[";
      for (auto& x : page.channels) {
        if (body.back() != '[')
          body += ',';
        body += "{\"channel\":" + codec::quote(x.channel)
          + ",\"subscribers\":" + std::to_string(x.subscribers) + "}";
      }
      body += "],\"next\":";
      body += page.next.empty() ? "null" : codec::quote(page.next);
      return body + "}";
    },
    caf::get_atom::value, channels_atom::value, std::move(after), limit);
}

/// One metric of GET /metrics: its HELP and TYPE lines and its samples.
void metric(std::string& out, const char* name, const char* type,
            const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, const std::string& name, uint64_t value) {
  out += name;
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

/// A metric with one unlabelled sample.
void single(std::string& out, const char* name, const char* type,
            const char* help, uint64_t value) {
  metric(out, name, type, help);
  sample(out, name, value);
}

std::string format_double(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", x);
  return buf;
}

/// GET /metrics: the Prometheus text exposition (version 0.0.4), read on
/// this I/O thread from the counters shared with the actors and every I/O
/// thread's own figures (see io_metrics).
void metrics(server::impl& srv, const connection_ptr& con) {
  auto& c = *srv.shared.counters;
  auto get = [](const std::atomic<uint64_t>& x) {
    return x.load(std::memory_order_relaxed);
  };
  uint64_t connections = 0;
  {
    std::unique_lock<std::mutex> guard{srv.mtx};
    connections = srv.open.size();
  }
  uint64_t sent = 0;
  uint64_t received = 0;
  std::array<uint64_t, io_metrics::bounds.size() + 1> buckets{};
  double sum = 0;
  for (auto& box : srv.outboxes)
    box->metrics.fold(sent, received, buckets, sum);
  std::string out;
  out.reserve(4096);
  single(out, "livehub_connections", "gauge",
         "Open WebSocket connections of this server.", connections);
  single(out, "livehub_channels", "gauge",
         "Channels with at least one subscriber.", get(c.channels));
  single(out, "livehub_subscriptions", "gauge",
         "Connection-channel subscription pairs.", get(c.subscriptions));
  single(out, "livehub_published_total", "counter",
         "Publications accepted (HTTP, WebSocket and C++ API).",
         get(c.published));
  single(out, "livehub_delivered_total", "counter",
         "Frames handed to connections and publications to actors.",
         get(c.delivered));
  single(out, "livehub_slow_consumer_disconnects_total", "counter",
         "Connections closed with 4008 (send queue limit or write timeout).",
         get(c.slow_consumer_disconnects));
  metric(out, "livehub_command_errors_total", "counter",
         "Commands answered with an error frame, by error code.");
  for (size_t i = 0; i < codec::error_code_count; ++i)
    sample(out,
           std::string{"livehub_command_errors_total{code=\""}
             + codec::to_string(static_cast<codec::error_code>(i)) + "\"}",
           get(c.command_errors_by_code[i]));
  metric(out, "livehub_rejected_upgrades_total", "counter",
         "Connections refused, by reason (origin also counts HTTP requests "
         "refused for their Origin; rate: max-connections-per-ip, 429; auth: "
         "closed with 4001 for a missing or bad token).");
  sample(out, "livehub_rejected_upgrades_total{reason=\"origin\"}",
         get(c.rejected_origin));
  sample(out, "livehub_rejected_upgrades_total{reason=\"capacity\"}",
         get(c.rejected_capacity));
  sample(out, "livehub_rejected_upgrades_total{reason=\"rate\"}",
         get(c.rejected_rate));
  sample(out, "livehub_rejected_upgrades_total{reason=\"auth\"}",
         get(c.unauthorized_disconnects));
  metric(out, "livehub_disconnects_total", "counter",
         "Connections closed by livehub, by close code's reason.");
  sample(out, "livehub_disconnects_total{reason=\"slow_consumer\"}",
         get(c.slow_consumer_disconnects));
  sample(out, "livehub_disconnects_total{reason=\"unauthorized\"}",
         get(c.unauthorized_disconnects));
  sample(out, "livehub_disconnects_total{reason=\"token_expired\"}",
         get(c.expired_disconnects));
  sample(out, "livehub_disconnects_total{reason=\"rate_limited\"}",
         get(c.rate_limited_disconnects));
  single(out, "livehub_broker_refused_total", "counter",
         "Publications refused because the broker was unavailable.",
         get(c.broker_refused));
  if (auto& b = srv.shared.broker)
    single(out, "livehub_broker_up", "gauge",
           "1 while the broker (livehub.broker) is connected, else 0.",
           b->up() ? 1 : 0);
  single(out, "livehub_bytes_sent_total", "counter",
         "Payload bytes of WebSocket messages handed to the sockets.", sent);
  single(out, "livehub_bytes_received_total", "counter",
         "Payload bytes of WebSocket messages and HTTP bodies received.",
         received);
  metric(out, "livehub_delivery_latency_seconds", "histogram",
         "From the start of a publication's delivery to its frame handed "
         "to the socket.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    cumulative += buckets[i];
    auto le = i < io_metrics::bounds.size()
      ? format_double(io_metrics::bounds[i])
      : std::string{"+Inf"};
    sample(out, "livehub_delivery_latency_seconds_bucket{le=\"" + le + "\"}",
           cumulative);
  }
  out += "livehub_delivery_latency_seconds_sum " + format_double(sum) + "\n";
  sample(out, "livehub_delivery_latency_seconds_count", cumulative);
  respond(con, status::ok, "text/plain; version=0.0.4; charset=utf-8",
          std::move(out));
}

/// Lets the application's http_handler answer; false when it passes (or
/// there is none).
bool application_route(server::impl& srv, const connection_ptr& con) {
  auto& handler = srv.cfg->http_handler;
  if (!handler)
    return false;
  auto& req = con->get_request();
  http_request x;
  x.method = req.get_method();
  x.target = con->get_resource();
  x.path = x.target.substr(0, x.target.find('?'));
  for (auto& [name, value] : req.get_headers())
    x.headers.emplace_back(name, value);
  x.body = con->get_request_body();
  asio::error_code ec;
  x.peer = con->socket().remote_endpoint(ec).address().to_string();
  auto reply = handler(x);
  if (!reply)
    return false;
  // The application may end the connection (Connection: close), but not
  // keep it open, nor frame the body itself: the next request's bytes
  // follow this response on a kept connection.
  auto header_is = [](const std::string& name, std::string_view wanted) {
    return std::equal(name.begin(), name.end(), wanted.begin(), wanted.end(),
                      [](unsigned char a, unsigned char b) {
                        return std::tolower(a) == std::tolower(b);
                      });
  };
  for (auto& [name, value] : reply->headers)
    if (header_is(name, "Connection") && http_policy::has_token(value, "close"))
      con->keep_alive(false);
  respond(con, static_cast<status::value>(reply->status), reply->content_type,
          std::move(reply->body));
  for (auto& [name, value] : reply->headers)
    if (!header_is(name, "Connection") && !header_is(name, "Content-Length")
        && !header_is(name, "Transfer-Encoding"))
      con->replace_header(name, value);
  return true;
}

void static_file(server::impl& srv, const connection_ptr& con,
                 std::string_view target) {
  auto file = http_policy::resolve_static(srv.cfg->web_root, target);
  if (!file)
    return respond_error(con, status::not_found, "not_found", "not found");
  std::ifstream in{*file, std::ios::binary};
  std::ostringstream body;
  body << in.rdbuf();
  if (!in)
    return respond_error(con, status::not_found, "not_found", "not found");
  respond(con, status::ok, http_policy::mime_type(*file), body.str());
  con->replace_header("Cache-Control", "no-cache");
}

/// Whether the connection of this request may carry another one after the
/// response (HTTP keep-alive; see http_policy::keeps_connection): not past
/// livehub.http-max-requests, nor once the server stops, nor after HEAD
/// (websocketpp writes the body of every response, and a client that asked
/// HEAD would read it as the start of the next response).
bool may_keep_alive(server::impl& srv, const connection_ptr& con) {
  if (con->requests_before() + size_t{1} >= srv.cfg->http_max_requests)
    return false;
  auto& req = con->get_request();
  if (req.get_method() == "HEAD")
    return false;
  if (!http_policy::keeps_connection(
        req.get_version(), req.get_header("Connection"),
        req.get_header("Transfer-Encoding"), req.get_header("Content-Length")))
    return false;
  std::unique_lock<std::mutex> guard{srv.mtx};
  return !srv.stopping;
}

} // namespace

void handle_http(server::impl& srv, connection_hdl hdl) {
  auto con = srv.ep.get_con_from_hdl(hdl);
  con->keep_alive(may_keep_alive(srv, con));
  srv.outboxes[con->context_index()]->metrics.add_received(
    con->get_request_body().size());
  // websocketpp reads no chunked body (it would take the chunks for the
  // next request): refuse it, and close (keep_alive said no).
  if (!con->get_request_header("Transfer-Encoding").empty())
    return respond_error(con, status::length_required, "length_required",
                         "chunked request bodies are not supported: send "
                         "Content-Length");
  // A web page must not act through a visitor's browser: a foreign Origin
  // gets nothing here (same rule as for upgrades).
  if (!http_policy::origin_allowed(srv.cfg->allowed_origins,
                                   con->get_request_header("Origin"),
                                   con->get_request_header("Host"))) {
    hub_counters::add(srv.shared.counters->rejected_origin);
    return respond_error(con, status::forbidden, "forbidden",
                         "origin not allowed");
  }
  auto& resource = con->get_resource();
  auto route = http_policy::route_request(con->get_request().get_method(),
                                          resource, srv.cfg->path,
                                          !srv.cfg->web_root.empty());
  using http_policy::handler;
  switch (route.to) {
    case handler::publish: return publish(srv, con);
    case handler::stats: return stats(srv, con);
    case handler::channels: return channels(srv, con);
    case handler::history: return history(srv, con);
    case handler::presence: return presence(srv, con);
    case handler::metrics: return metrics(srv, con);
    case handler::healthz:
      return respond(con, status::ok, "text/plain; charset=utf-8", "ok");
    case handler::readyz:
      // Ready while the server serves and its broker, if any, is up.
      if (srv.shared.broker && !srv.shared.broker->up())
        return respond(con, status::service_unavailable,
                       "text/plain; charset=utf-8", "broker unavailable");
      return respond(con, status::ok, "text/plain; charset=utf-8", "ready");
    case handler::upgrade_required:
      return respond_error(con, status::upgrade_required, "upgrade_required",
                           "this path takes WebSocket upgrades");
    case handler::static_file:
      if (application_route(srv, con))
        return;
      return static_file(srv, con, resource);
    case handler::wrong_method:
      respond_error(con, status::method_not_allowed, "method_not_allowed",
                    std::string{"use "} + route.allow);
      con->replace_header("Allow", route.allow);
      return;
    case handler::not_found:
      if (application_route(srv, con))
        return;
      break;
  }
  respond_error(con, status::not_found, "not_found", "not found");
}

} // namespace livehub::transport

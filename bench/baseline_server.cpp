// livehub-baseline: the plainest websocketpp broadcast server, the yardstick
// of bench/run. No actors, one I/O thread: a map channel -> set of
// connection handles, and one websocketpp `send` per subscriber. It speaks
// the subset of livehub's protocol the benchmark uses (docs/protocol.md):
//   subscribe / unsubscribe (an `ok` reply when the command has an id),
//   publish (only on trusted connections: loopback peer, no Origin header),
//   ping -> pong, POST /api/publish, GET /api/stats, GET /healthz.
// Commands are parsed with RapidJSON; each publication's frame
// {"channel":C,"type":T,"data":D} is built once per publish (as the seed hub
// does) and sent to each subscriber with websocketpp's plain
// send(hdl, payload, opcode), which copies it into a message per subscriber.
//
// Run:  livehub-baseline [--host=127.0.0.1] [--port=8080]   (--port=0 picks a
// free port; the first line of stdout is "listening on HOST:PORT").
// SIGINT / SIGTERM: close every connection (1001), exit 0.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <unordered_map>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include "bench_protocol.hpp"
#include "server_args.hpp"

namespace {

/// websocketpp's default asio config; the only tweak is the one livehub
/// makes for a fair comparison: no access log (it writes every frame), and
/// no error log.
struct baseline_config : websocketpp::config::asio {
  using type = baseline_config;
  static const websocketpp::log::level alog_level
    = websocketpp::log::alevel::none;
  static const websocketpp::log::level elog_level
    = websocketpp::log::elevel::none;
};

using server_t = websocketpp::server<baseline_config>;
using websocketpp::connection_hdl;
using hdl_set = std::set<connection_hdl, std::owner_less<connection_hdl>>;

struct conn_info {
  bool trusted = false;
  std::set<std::string> channels;
};

class baseline {
 public:
  baseline() {
    ep_.clear_access_channels(websocketpp::log::alevel::all);
    ep_.clear_error_channels(websocketpp::log::elevel::all);
    ep_.init_asio();
    ep_.set_reuse_addr(true);
    ep_.set_listen_backlog(1024);
    ep_.set_max_message_size(512 * 1024);
    ep_.set_max_http_body_size(512 * 1024);
    ep_.set_open_handler([this](connection_hdl h) {
      on_open(h);
    });
    ep_.set_close_handler([this](connection_hdl h) {
      on_close(h);
    });
    ep_.set_message_handler(
      [this](connection_hdl h, server_t::message_ptr msg) {
        on_message(h, msg->get_payload());
      });
    ep_.set_http_handler([this](connection_hdl h) {
      on_http(h);
    });
  }

  int run(const std::string& host, uint16_t port) {
    websocketpp::lib::asio::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec) {
      std::cerr << "livehub-baseline: bad host " << host << "\n";
      return 1;
    }
    ep_.listen(asio::ip::tcp::endpoint(addr, port), ec);
    if (ec) {
      std::cerr << "livehub-baseline: listen: " << ec.message() << "\n";
      return 1;
    }
    auto local = ep_.get_local_endpoint(ec);
    ep_.start_accept();
    std::cout << "listening on " << host << ":" << local.port() << std::endl;
    asio::signal_set signals(ep_.get_io_service(), SIGINT, SIGTERM);
    asio::steady_timer deadline(ep_.get_io_service());
    signals.async_wait([&](const asio::error_code& err, int) {
      if (err)
        return;
      stopping_ = true;
      websocketpp::lib::error_code ignored;
      ep_.stop_listening(ignored);
      for (auto& entry : conns_)
        ep_.close(entry.first, websocketpp::close::status::going_away,
                  "shutdown", ignored);
      deadline.expires_after(std::chrono::seconds(1));
      deadline.async_wait([this](const asio::error_code&) {
        ep_.stop();
      });
      if (conns_.empty())
        ep_.stop();
    });
    ep_.run();
    return 0;
  }

 private:
  // -- WebSocket ------------------------------------------------------------

  void on_open(connection_hdl h) {
    auto con = ep_.get_con_from_hdl(h);
    conn_info info;
    asio::error_code ec;
    auto peer = con->get_raw_socket().remote_endpoint(ec).address();
    info.trusted = !ec && peer.is_loopback()
      && con->get_request_header("Origin").empty();
    conns_.emplace(h, std::move(info));
  }

  void on_close(connection_hdl h) {
    auto i = conns_.find(h);
    if (i == conns_.end())
      return;
    for (auto& name : i->second.channels) {
      auto j = channels_.find(name);
      if (j == channels_.end())
        continue;
      j->second.erase(h);
      --subscriptions_;
      if (j->second.empty())
        channels_.erase(j);
    }
    conns_.erase(i);
    if (stopping_ && conns_.empty())
      ep_.stop();
  }

  void on_message(connection_hdl h, const std::string& text) {
    auto ci = conns_.find(h);
    if (ci == conns_.end())
      return;
    bench::command cmd;
    bench::read_command(text, cmd);
    auto& id = cmd.id;
    switch (cmd.kind) {
      case bench::command::malformed:
        return send_text(h, bench::error_json(id, cmd.error, cmd.message));
      case bench::command::subscribe: {
        if (!cmd.channel || *cmd.channel == "*")
          return reply_bad_channel(h, id);
        auto& channel = *cmd.channel;
        if (ci->second.channels.insert(channel).second) {
          channels_[channel].insert(h);
          ++subscriptions_;
        }
        return reply_ok(h, id);
      }
      case bench::command::unsubscribe: {
        if (!cmd.channel)
          return reply_bad_channel(h, id);
        auto& channel = *cmd.channel;
        if (ci->second.channels.erase(channel) > 0) {
          auto j = channels_.find(channel);
          j->second.erase(h);
          --subscriptions_;
          if (j->second.empty())
            channels_.erase(j);
        }
        return reply_ok(h, id);
      }
      case bench::command::publish:
        if (!ci->second.trusted)
          return send_text(
            h, bench::error_json(id, "forbidden", "not a trusted publisher"));
        if (!cmd.channel)
          return reply_bad_channel(h, id);
        publish(*cmd.channel, cmd.event, cmd.data);
        return reply_ok(h, id);
      case bench::command::ping: return send_text(h, bench::pong_json(id));
      case bench::command::unknown:
        return send_text(
          h, bench::error_json(id, "unknown_command", "unknown type"));
    }
  }

  /// Builds the frame once, then one plain send per subscriber.
  void publish(const std::string& channel, const std::string& event,
               const rapidjson::Value* data) {
    auto frame = bench::publication_json(channel, event, data);
    ++published_;
    websocketpp::lib::error_code ec;
    if (channel == "*") {
      for (auto& entry : conns_) {
        ep_.send(entry.first, frame, websocketpp::frame::opcode::text, ec);
        ++delivered_;
      }
      return;
    }
    auto i = channels_.find(channel);
    if (i == channels_.end())
      return;
    for (auto& h : i->second) {
      ep_.send(h, frame, websocketpp::frame::opcode::text, ec);
      ++delivered_;
    }
  }

  void send_text(connection_hdl h, const std::string& text) {
    websocketpp::lib::error_code ec;
    ep_.send(h, text, websocketpp::frame::opcode::text, ec);
  }

  void reply_ok(connection_hdl h, const std::string& id) {
    if (!id.empty())
      send_text(h, bench::ok_json(id));
  }

  void reply_bad_channel(connection_hdl h, const std::string& id) {
    send_text(h, bench::error_json(id, "bad_channel", "bad channel"));
  }

  // -- HTTP -----------------------------------------------------------------

  void on_http(connection_hdl h) {
    auto con = ep_.get_con_from_hdl(h);
    const auto& method = con->get_request().get_method();
    std::string path = con->get_resource();
    path = path.substr(0, path.find('?'));
    auto respond = [&](websocketpp::http::status_code::value status,
                       const std::string& body, const char* type) {
      con->set_status(status);
      con->append_header("Content-Type", type);
      con->set_body(body);
    };
    if (method == "GET" && path == "/api/stats") {
      respond(websocketpp::http::status_code::ok,
              bench::stats_json(conns_.size(), channels_.size(), subscriptions_,
                                published_, delivered_),
              "application/json");
    } else if (method == "GET" && path == "/healthz") {
      respond(websocketpp::http::status_code::ok, "ok", "text/plain");
    } else if (method == "POST" && path == "/api/publish") {
      asio::error_code ec;
      auto peer = con->get_raw_socket().remote_endpoint(ec).address();
      if (ec || !peer.is_loopback()
          || !con->get_request_header("Origin").empty()) {
        respond(websocketpp::http::status_code::forbidden,
                "{\"error\":\"forbidden\"}", "application/json");
        return;
      }
      bench::publish_body pub;
      if (!bench::read_publish_body(con->get_request_body(), pub)) {
        respond(websocketpp::http::status_code::bad_request,
                "{\"error\":\"bad request\"}", "application/json");
        return;
      }
      publish(pub.channel, pub.type, pub.data);
      respond(websocketpp::http::status_code::accepted, "{\"ok\":true}",
              "application/json");
    } else {
      respond(websocketpp::http::status_code::not_found, "not found",
              "text/plain");
    }
  }

  server_t ep_;
  std::map<connection_hdl, conn_info, std::owner_less<connection_hdl>> conns_;
  std::unordered_map<std::string, hdl_set> channels_;
  uint64_t subscriptions_ = 0;
  uint64_t published_ = 0;
  uint64_t delivered_ = 0;
  bool stopping_ = false;
};

} // namespace

int main(int argc, char** argv) {
  auto args = bench::parse_server_args(argc, argv, "livehub-baseline");
  if (!args)
    return 2;
  baseline b;
  return b.run(args->host, args->port);
}

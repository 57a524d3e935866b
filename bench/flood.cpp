// livehub-flood: what a flooding client costs a well-behaved one. Measures
// the ping round trip of a calm client alone, then while F flooding clients
// send commands as fast as their sockets take them, and reports both and
// what became of the flooders (rate_limited errors, close 4029). Both
// clients are browser-like (they send an Origin), so they are ordinary,
// rate-limited connections. Run by bench/run (scenario "flood").
//
//   livehub-flood --port P [--pings N] [--flooders F] [--flood-commands C]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "support/ws_client.hpp"

using namespace livehub::test;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  uint16_t port = 0;
  size_t pings = 2000;
  size_t flooders = 2;
  size_t flood_commands = 20000;
};

[[noreturn]] void usage(const char* why) {
  if (why)
    std::fprintf(stderr, "livehub-flood: %s\n", why);
  std::fprintf(stderr,
               "usage: livehub-flood --port P [--pings N (2000)] "
               "[--flooders F (2)] [--flood-commands C (20000)]\n");
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc)
      usage(("missing value for " + arg).c_str());
    auto n = std::strtoull(argv[++i], nullptr, 10);
    if (arg == "--port")
      o.port = static_cast<uint16_t>(n);
    else if (arg == "--pings")
      o.pings = n;
    else if (arg == "--flooders")
      o.flooders = n;
    else if (arg == "--flood-commands")
      o.flood_commands = n;
    else
      usage(("unknown option " + arg).c_str());
  }
  if (o.port == 0 || o.pings == 0)
    usage("--port and --pings must be positive");
  return o;
}

ws_options browser(uint16_t port) {
  ws_options opts;
  opts.headers = {{"Origin", "http://127.0.0.1:" + std::to_string(port)}};
  return opts;
}

/// `n` ping round trips, in microseconds; paced at about 500/s so that the
/// calm client stays within the default command rate (100/s, burst 200).
std::vector<double> round_trips(ws_client& c, size_t n) {
  std::vector<double> result;
  for (size_t i = 0; i < n; ++i) {
    auto start = clock_type::now();
    if (!c.send_text(R"({"type":"ping","id":1})"))
      break;
    auto msg = c.receive(std::chrono::milliseconds{5000});
    if (msg.kind != ws_kind::text || msg.data.find("pong") == std::string::npos)
      break;
    result.push_back(
      std::chrono::duration<double, std::micro>(clock_type::now() - start)
        .count());
    std::this_thread::sleep_for(std::chrono::microseconds{10000});
  }
  return result;
}

double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  return xs[std::min(xs.size() - 1, static_cast<size_t>(p * xs.size()))];
}

} // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);
  ws_client calm{o.port, browser(o.port)};
  if (calm.status() != 101) {
    std::fprintf(stderr, "livehub-flood: upgrade failed (%d)\n", calm.status());
    return 1;
  }
  // Fewer samples than the pace allows at 100/s would be refused: the calm
  // client sends at most 100 a second (10 ms apart).
  auto alone = round_trips(calm, o.pings / 2);
  std::atomic<size_t> sent{0};
  std::atomic<size_t> refused{0};
  std::atomic<size_t> closed_4029{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> flooders;
  std::atomic<size_t> connections{0};
  // Each flooder sends as fast as its socket takes it and, once closed with
  // 4029, connects again (as an attacker would) until the measurement ends.
  for (size_t f = 0; f < o.flooders; ++f)
    flooders.emplace_back([&] {
      while (!stop) {
        ws_client flood{o.port, browser(o.port)};
        if (flood.status() != 101)
          return;
        ++connections;
        std::atomic<bool> ended{false};
        // A reader drains the replies so the flooder's socket never stalls.
        std::thread reader{[&] {
          for (;;) {
            auto msg = flood.receive(std::chrono::milliseconds{200});
            if (msg.kind == ws_kind::text) {
              if (msg.data.find("rate_limited") != std::string::npos)
                ++refused;
            } else if (msg.kind == ws_kind::close) {
              if (msg.close_code == 4029)
                ++closed_4029;
              break;
            } else if (msg.kind == ws_kind::ended
                       || (msg.kind == ws_kind::timeout && stop)) {
              break;
            }
          }
          ended = true;
        }};
        // Pipelined, in batches: one write of many commands costs the
        // flooder little CPU (on a 2-core machine a flooder spinning on
        // small writes would starve the calm client of CPU by itself), and
        // gives the server all the work it can be made to do.
        constexpr size_t batch = 500;
        for (size_t i = 0; i < o.flood_commands && !stop && !ended;
             i += batch) {
          if (!flood.send_texts(R"({"type":"ping","id":1})", batch,
                                std::chrono::milliseconds{1000}))
            break;
          sent += batch;
        }
        reader.join();
      }
    });
  auto during = round_trips(calm, o.pings / 2);
  stop = true;
  for (auto& t : flooders)
    t.join();
  std::printf("flood alone_p50_us=%.1f alone_p99_us=%.1f during_p50_us=%.1f "
              "during_p99_us=%.1f samples=%zu flood_sent=%zu "
              "flood_refused=%zu flood_closed_4029=%zu flood_connections=%zu "
              "flooders=%zu\n",
              percentile(alone, 0.5), percentile(alone, 0.99),
              percentile(during, 0.5), percentile(during, 0.99), during.size(),
              sent.load(), refused.load(), closed_4029.load(),
              connections.load(), o.flooders);
  return during.size() == o.pings / 2 ? 0 : 1;
}

// livehub-http-publish: publishing over HTTP the way backends do. C
// connections (a backend's connection pool), each sending POST /api/publish
// one request at a time for D seconds, either keeping the connection alive
// (HTTP/1.1, reconnecting only when the server closes it) or with
// `Connection: close` and a new connection per request. Prints one line of
// key=value results: requests, ok (202), errors, reconnects, publications/s
// and the request latency's p50/p99 in microseconds. Run by bench/run
// (scenario "http").
//
//   livehub-http-publish --port P [--connections C (4)] [--duration D (5)]
//                        [--close] [--channel NAME (bench)] [--payload B (64)]
#include <netinet/tcp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/sockets.hpp"

using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  uint16_t port = 0;
  size_t connections = 4;
  double duration = 5;
  bool close = false;
  std::string channel = "bench";
  size_t payload = 64;
};

[[noreturn]] void usage(const char* why) {
  if (why)
    std::fprintf(stderr, "livehub-http-publish: %s\n", why);
  std::fprintf(stderr,
               "usage: livehub-http-publish --port P [--connections C (4)] "
               "[--duration D (5)] [--close] [--channel NAME (bench)] "
               "[--payload B (64)]\n");
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    if (arg == "--port")
      o.port = static_cast<uint16_t>(std::atoi(next().c_str()));
    else if (arg == "--connections")
      o.connections = static_cast<size_t>(std::atol(next().c_str()));
    else if (arg == "--duration")
      o.duration = std::atof(next().c_str());
    else if (arg == "--close")
      o.close = true;
    else if (arg == "--channel")
      o.channel = next();
    else if (arg == "--payload")
      o.payload = static_cast<size_t>(std::atol(next().c_str()));
    else
      usage(("unknown option " + arg).c_str());
  }
  if (o.port == 0 || o.connections == 0 || o.duration <= 0)
    usage("--port, --connections and --duration must be positive");
  return o;
}

/// A connection to 127.0.0.1:`port` with Nagle off (each request is one
/// write), or -1.
int connect_loopback(uint16_t port) {
  int fd = livehub::test::connect_tcp(port, 5);
  if (fd >= 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return fd;
}

/// Reads one response from `fd` (`buf` keeps bytes read beyond it). Returns
/// its status (0 on failure) and whether the server will close.
int read_response(int fd, std::string& buf, bool& closes) {
  size_t head_end;
  while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
    char tmp[4096];
    auto n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0)
      return 0;
    buf.append(tmp, static_cast<size_t>(n));
  }
  auto head = buf.substr(0, head_end);
  for (auto& c : head)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t length = 0;
  if (auto i = head.find("content-length:"); i != std::string::npos)
    length = static_cast<size_t>(std::atol(head.c_str() + i + 15));
  closes = head.find("connection: close") != std::string::npos;
  while (buf.size() < head_end + 4 + length) {
    char tmp[4096];
    auto n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0)
      return 0;
    buf.append(tmp, static_cast<size_t>(n));
  }
  int status = std::atoi(head.c_str() + 9); // "http/1.1 202"
  buf.erase(0, head_end + 4 + length);
  return status;
}

struct result {
  uint64_t requests = 0;
  uint64_t ok = 0;
  uint64_t errors = 0;
  uint64_t reconnects = 0;
  std::vector<uint32_t> latency_us;
};

void run(const options& o, clock_type::time_point end, result& r) {
  std::string body = "{\"channel\":\"" + o.channel
    + "\",\"type\":\"b\",\"data\":\"" + std::string(o.payload, 'x') + "\"}";
  std::string request = "POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Content-Type: application/json\r\nContent-Length: "
    + std::to_string(body.size()) + "\r\n"
    + (o.close ? "Connection: close\r\n" : "") + "\r\n" + body;
  int fd = -1;
  std::string buf;
  while (clock_type::now() < end) {
    if (fd < 0) {
      fd = connect_loopback(o.port);
      buf.clear();
      if (fd < 0) {
        ++r.errors;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      ++r.reconnects;
    }
    auto t0 = clock_type::now();
    bool closes = false;
    int status = livehub::test::write_all(fd, request)
      ? read_response(fd, buf, closes)
      : 0;
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                clock_type::now() - t0)
                .count();
    ++r.requests;
    if (status == 202) {
      ++r.ok;
      r.latency_us.push_back(static_cast<uint32_t>(us));
    } else {
      ++r.errors;
    }
    if (status == 0 || closes || o.close) {
      ::close(fd);
      fd = -1;
    }
  }
  if (fd >= 0)
    ::close(fd);
}

} // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);
  std::vector<result> results(o.connections);
  std::vector<std::thread> threads;
  auto start = clock_type::now();
  auto end = start
    + std::chrono::duration_cast<clock_type::duration>(
               std::chrono::duration<double>(o.duration));
  for (auto& r : results)
    threads.emplace_back([&o, end, &r] {
      run(o, end, r);
    });
  for (auto& t : threads)
    t.join();
  auto seconds
    = std::chrono::duration<double>(clock_type::now() - start).count();
  result total;
  for (auto& r : results) {
    total.requests += r.requests;
    total.ok += r.ok;
    total.errors += r.errors;
    total.reconnects += r.reconnects;
    total.latency_us.insert(total.latency_us.end(), r.latency_us.begin(),
                            r.latency_us.end());
  }
  auto& l = total.latency_us;
  std::sort(l.begin(), l.end());
  auto pct = [&l](double p) -> uint32_t {
    if (l.empty())
      return 0;
    return l[std::min(l.size() - 1, static_cast<size_t>(p * l.size()))];
  };
  std::printf("mode=%s connections=%zu requests=%llu ok=%llu errors=%llu "
              "reconnects=%llu pubs_per_s=%.0f p50_us=%u p99_us=%u\n",
              o.close ? "close" : "keepalive", o.connections,
              static_cast<unsigned long long>(total.requests),
              static_cast<unsigned long long>(total.ok),
              static_cast<unsigned long long>(total.errors),
              static_cast<unsigned long long>(total.reconnects),
              static_cast<double>(total.ok) / seconds, pct(0.5), pct(0.99));
  return total.errors > 0 ? 1 : 0;
}

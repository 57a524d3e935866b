// What the fast-lane tests (plain and TLS) share: a reader that stops
// reading while large publications pile up for it, then reads them all.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include <doctest/doctest.h>

#include "livehub/all.hpp"
#include "support/ws_client.hpp"

namespace livehub::test {

/// `cfg` for a reader that stalls: its frames stay queued (no 4008), and
/// the keepalive pings it every 50 ms meanwhile without closing it.
inline hub_config stalled_reader_config(hub_config cfg) {
  cfg.send_queue_limit = 100000;
  cfg.send_queue_bytes = size_t{64} << 20;
  cfg.ping_interval = caf::timespan{std::chrono::milliseconds{50}};
  cfg.pong_timeout = caf::timespan{std::chrono::seconds{60}};
  return cfg;
}

/// The data of publication `n`: `{"n":N,"pad":"..."}` with 32 KiB of `fill`.
inline std::string padded_data(int n, char fill) {
  return R"({"n":)" + std::to_string(n) + R"(,"pad":")"
    + std::string(32 * 1024, fill) + "\"}";
}

/// Reads `c` until `publications` frames carried publications 0, 1, ... in
/// order, each whole (its data exactly padded_data(i, fill)), then the end:
/// a close frame with 1001, or the end of the connection (a server's
/// stop() waits only so long for a close handshake, and a reader this far
/// behind on a loaded machine may miss it). Nothing may come in between.
inline void require_in_order_then_end(ws_client& c, int publications, char fill,
                                      std::chrono::milliseconds timeout) {
  int received = 0;
  ws_message last;
  for (; received <= publications; ++received) {
    last = c.receive(timeout);
    if (last.kind != ws_kind::text)
      break;
    if (last.data.find(R"("data":)" + padded_data(received, fill) + "}")
        == std::string::npos) {
      FAIL_CHECK("frame " << received << " is not publication " << received);
      break;
    }
  }
  CHECK(received == publications);
  INFO("after the frames: " << last.describe());
  CHECK((last.kind == ws_kind::close || last.kind == ws_kind::ended));
  if (last.kind == ws_kind::close)
    CHECK(last.close_code == 1001);
}

} // namespace livehub::test

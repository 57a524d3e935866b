// Raw TCP for tests that must step outside any protocol: a blocking
// connection, and a count of the sockets this process holds on a port.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace livehub::test {

/// A plain TCP connection to 127.0.0.1:`port` (blocking; reads wait at most
/// `read_timeout_s` seconds), or -1.
inline int connect_tcp(uint16_t port, long read_timeout_s = 10) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{read_timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

/// Writes all of `bytes` to the blocking socket `fd`.
inline bool write_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

/// Sockets of this process whose local port is `port`, in any TCP state
/// (from /proc/net/tcp and tcp6; a socket no process holds any more, e.g.
/// one still sending its last bytes after close, has inode 0 and is not
/// counted).
inline int sockets_on_port(uint16_t port) {
  int count = 0;
  for (auto file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in{file};
    std::string line;
    std::getline(in, line); // header
    while (std::getline(in, line)) {
      std::istringstream fields{line};
      std::string slot, local, remote, state, queues, timer, retr, uid, tmo;
      std::string inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retr
        >> uid >> tmo >> inode;
      auto colon = local.rfind(':');
      if (colon == std::string::npos)
        continue;
      auto local_port = std::stoul(local.substr(colon + 1), nullptr, 16);
      if (local_port == port && inode != "0")
        ++count;
    }
  }
  return count;
}

} // namespace livehub::test

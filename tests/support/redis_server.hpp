// A redis-server of the test's own, for tests of the Redis client and of
// several nodes over Redis: a child process on a free port of 127.0.0.1,
// with nothing saved to disk, in a temporary directory of its own.
//
//   redis_server redis;                         // started, answers PING
//   redis_server locked{{"--requirepass", "s3cret"}};
//   redis.url()                                 // "redis://127.0.0.1:PORT"
//   redis.kill();                               // SIGKILL: a crash
//   redis.restart();                            // same port, empty again
//   redis.pause(); redis.resume();              // SIGSTOP / SIGCONT: a hang
//
// The destructor kills the server (SIGKILL, then waitpid) and removes the
// directory. The child also dies with the thread that made the fixture
// (PR_SET_PDEATHSIG), so a test binary that crashes or is killed by ctest's
// timeout leaves no server behind: make the fixture on the test's own
// thread. Loopback only; redis-server comes from PATH (Debian's
// `redis-server` package, installed by scripts/install-deps --tests).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/sockets.hpp"

namespace livehub::test {

class redis_server {
 public:
  /// How long a start may take until the server answers PING.
  static constexpr auto start_timeout = std::chrono::seconds{5};

  /// Starts redis-server with the test settings plus `extra_args` (e.g.
  /// `{"--requirepass", "secret"}`) and waits until it answers PING. Throws
  /// std::runtime_error, with the server's log, when it does not.
  explicit redis_server(std::vector<std::string> extra_args = {})
    : extra_args_(std::move(extra_args)) {
    char dir_template[] = "/tmp/livehub-redis-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr)
      throw std::runtime_error("redis_server: mkdtemp failed");
    dir_ = dir_template;
    // Another process may take the free port before redis-server binds it:
    // try a few.
    std::string error;
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      if (launch(error))
        return;
    }
    std::filesystem::remove_all(dir_);
    throw std::runtime_error("redis_server: " + error);
  }

  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  ~redis_server() {
    kill();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  /// The port it listens on (the same after restart()).
  uint16_t port() const noexcept {
    return port_;
  }

  /// `redis://127.0.0.1:PORT`, plus `/db` when `db` is not 0.
  std::string url(int db = 0) const {
    auto result = "redis://127.0.0.1:" + std::to_string(port_);
    if (db != 0)
      result += "/" + std::to_string(db);
    return result;
  }

  /// True from a start until kill().
  bool running() const noexcept {
    return pid_ > 0;
  }

  /// Kills the server at once (SIGKILL: no goodbye to its clients, as in a
  /// crash) and reaps it. Nothing when it is not running.
  void kill() {
    if (pid_ <= 0)
      return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  /// Kills the server if it runs, then starts a new one on the same port
  /// with the same arguments (an empty data set: nothing is saved), and
  /// waits until it answers PING. Throws std::runtime_error when it does
  /// not.
  void restart() {
    kill();
    std::string error;
    if (!launch(error))
      throw std::runtime_error("redis_server: restart: " + error);
  }

  /// Freezes the server (SIGSTOP): connections stay open, nothing is
  /// answered. The kernel still completes new TCP connections.
  void pause() {
    if (pid_ > 0)
      ::kill(pid_, SIGSTOP);
  }

  /// Lets a paused server run again (SIGCONT).
  void resume() {
    if (pid_ > 0)
      ::kill(pid_, SIGCONT);
  }

  /// The server's log so far (for failure messages).
  std::string log() const {
    std::ifstream in{dir_ + "/redis.log"};
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  }

 private:
  /// A port that was free on 127.0.0.1 a moment ago.
  static uint16_t free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0
        || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (fd >= 0)
        ::close(fd);
      throw std::runtime_error("redis_server: no free port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
  }

  /// Starts the child and waits for PING; on failure, kills and reaps it
  /// and says why in `error`.
  bool launch(std::string& error) {
    std::vector<std::string> args{
      "redis-server", "--port",    std::to_string(port_), "--bind", "127.0.0.1",
      "--save",       "",          "--appendonly",        "no",     "--dir",
      dir_,           "--logfile", dir_ + "/redis.log"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;
    for (auto& x : args)
      argv.push_back(x.data());
    argv.push_back(nullptr);
    auto parent = ::getpid();
    auto pid = ::fork();
    if (pid < 0) {
      error = "fork failed";
      return false;
    }
    if (pid == 0) {
      // The child: only async-signal-safe calls until exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent)
        ::_exit(127);
      int null = ::open("/dev/null", O_RDWR);
      if (null >= 0) {
        ::dup2(null, STDIN_FILENO);
        ::dup2(null, STDOUT_FILENO);
      }
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    auto deadline = std::chrono::steady_clock::now() + start_timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        error = "redis-server on port " + std::to_string(port_)
          + " exited at once (is it installed?); its log:\n" + log();
        return false;
      }
      if (answers_ping())
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    kill();
    error = "redis-server on port " + std::to_string(port_)
      + " did not answer PING within 5 s; its log:\n" + log();
    return false;
  }

  /// True when the port answers PING with a reply line (+PONG, or -NOAUTH
  /// when a password is required: it answers all the same).
  bool answers_ping() const {
    int fd = connect_tcp(port_, 1);
    if (fd < 0)
      return false;
    bool ok = false;
    if (write_all(fd, "PING\r\n")) {
      char buf[64];
      auto n = ::recv(fd, buf, sizeof(buf), 0);
      ok = n > 0 && (buf[0] == '+' || buf[0] == '-');
    }
    ::close(fd);
    return ok;
  }

  std::vector<std::string> extra_args_;
  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

} // namespace livehub::test

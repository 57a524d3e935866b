// The livehub-chat binary as its users run it: started with port 0, it prints
// where it listens; rooms take valid chat messages from browsers and refuse
// others clearly; SIGTERM closes every connection with 1001 and exits 0.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "support/ws_client.hpp"

extern char** environ;

using namespace std::chrono_literals;
using namespace livehub::test;

namespace {

/// livehub-chat running on a free port of 127.0.0.1; killed if still alive
/// when destroyed.
class chat_process {
 public:
  chat_process() {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<std::string> args{LIVEHUB_CHAT_BIN, "--livehub.port=0",
                                  "--livehub.host=127.0.0.1"};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE(posix_spawn(&pid_, LIVEHUB_CHAT_BIN, &actions, nullptr, argv.data(),
                        environ)
            == 0);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    out_ = fdopen(fds[0], "r");
    char line[256] = {0};
    REQUIRE(fgets(line, sizeof(line), out_) != nullptr);
    first_line_ = line;
    auto colon = first_line_.rfind(':');
    REQUIRE(colon != std::string::npos);
    port_ = static_cast<uint16_t>(std::stoi(first_line_.substr(colon + 1)));
  }

  ~chat_process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_)
      fclose(out_);
  }

  uint16_t port() const {
    return port_;
  }

  const std::string& first_line() const {
    return first_line_;
  }

  /// Sends `sig` and waits up to `limit` for the exit; returns the exit
  /// status, or -1 when the process did not exit in time.
  int stop(int sig, std::chrono::milliseconds limit) {
    kill(pid_, sig);
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = 0;
  FILE* out_ = nullptr;
  std::string first_line_;
  uint16_t port_ = 0;
};

/// A browser-like connection: same-origin Origin header, so not trusted.
ws_client browser(uint16_t port) {
  ws_options opts;
  opts.headers = {{"Origin", "http://127.0.0.1:" + std::to_string(port)}};
  ws_client client{port, opts};
  REQUIRE(client.status() == 101);
  return client;
}

std::string next_text(ws_client& client) {
  auto msg = client.receive(10s);
  INFO("received: " << msg.describe());
  REQUIRE(msg.kind == ws_kind::text);
  return msg.data;
}

} // namespace

TEST_CASE("livehub-chat prints where it listens, checks room messages and "
          "stops on SIGTERM with 1001") {
  chat_process chat;
  CHECK(chat.first_line().rfind("listening on 127.0.0.1:", 0) == 0);
  auto ada = browser(chat.port());
  auto bob = browser(chat.port());
  for (auto* c : {&ada, &bob}) {
    REQUIRE(
      c->send_text(R"({"type":"subscribe","channel":"room:lobby","id":1})"));
    CHECK(next_text(*c) == R"({"type":"ok","id":1})");
  }
  REQUIRE(
    ada.send_text(R"({"type":"publish","channel":"room:lobby",)"
                  R"("event":"message","data":{"name":"Ada","text":"hi"}})"));
  auto expected = R"({"channel":"room:lobby","type":"message",)"
                  R"("data":{"name":"Ada","text":"hi"}})";
  CHECK(next_text(bob) == expected);
  CHECK(next_text(ada) == expected);
  // Not a chat message: refused with a reason, and nothing is published.
  REQUIRE(
    ada.send_text(R"({"type":"publish","channel":"room:lobby",)"
                  R"("event":"message","data":{"text":"no name"},"id":2})"));
  auto err = next_text(ada);
  CHECK(err.find(R"("code":"bad_command")") != std::string::npos);
  CHECK(err.find(R"(\"name\" must be a string)") != std::string::npos);
  // Outside the rooms, browsers may not publish.
  REQUIRE(ada.send_text(R"({"type":"publish","channel":"news","event":"x",)"
                        R"("data":1,"id":3})"));
  CHECK(next_text(ada).find(R"("code":"forbidden")") != std::string::npos);
  CHECK(bob.receive(200ms).kind == ws_kind::timeout);
  // SIGTERM: every connection is told 1001, the process exits 0 promptly.
  CHECK(chat.stop(SIGTERM, 3000ms) == 0);
  for (auto* c : {&ada, &bob}) {
    auto msg = c->receive(5s);
    CHECK(msg.kind == ws_kind::close);
    CHECK(msg.close_code == 1001);
  }
}

TEST_CASE("livehub-chat exits 0 on SIGINT with no client connected") {
  chat_process chat;
  CHECK(chat.stop(SIGINT, 3000ms) == 0);
}

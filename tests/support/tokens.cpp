#include "support/tokens.hpp"

#include "tools/token/sign.hpp"

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace livehub::test {

namespace {

/// Runs `args` (args[0] looked up in PATH) with stdout and stderr appended
/// to `log`; throws with the log's content unless it exits 0.
void run(std::vector<std::string> args, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> argv;
  for (auto& arg : args)
    argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  auto err = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(),
                          environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0)
    throw std::runtime_error("cannot run " + args[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ; // nop
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string command;
    for (auto& arg : args)
      command += arg + ' ';
    std::string output;
    try {
      output = token_tool::read_file(log);
    } catch (const std::runtime_error&) {
      // nop: the command's failure is the news
    }
    throw std::runtime_error(command + "failed: " + output);
  }
}

} // namespace

std::string sign(std::string_view alg, std::string_view key,
                 std::string_view claims_json) {
  return token_tool::sign_token(alg, key, claims_json);
}

std::string hs256(std::string_view secret, std::string_view claims_json) {
  return sign("HS256", secret, claims_json);
}

key_pair make_key_pair(const std::string& kind, const std::string& dir) {
  std::vector<std::string> generate{"openssl", "genpkey", "-algorithm"};
  if (kind == "rsa")
    generate.insert(generate.end(),
                    {"RSA", "-pkeyopt", "rsa_keygen_bits:2048"});
  else if (kind == "ec")
    generate.insert(generate.end(),
                    {"EC", "-pkeyopt", "ec_paramgen_curve:P-256"});
  else
    throw std::invalid_argument("make_key_pair: kind must be rsa or ec, not "
                                + kind);
  std::filesystem::create_directories(dir);
  key_pair result;
  result.private_path = dir + "/" + kind + "_private.pem";
  result.public_path = dir + "/" + kind + "_public.pem";
  auto log = dir + "/" + kind + "_openssl.log";
  generate.insert(generate.end(), {"-out", result.private_path});
  run(generate, log);
  run({"openssl", "pkey", "-in", result.private_path, "-pubout", "-out",
       result.public_path},
      log);
  result.private_pem = token_tool::read_file(result.private_path);
  result.public_pem = token_tool::read_file(result.public_path);
  return result;
}

std::string base64url(std::string_view bytes) {
  static constexpr char alphabet[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto at = [&](size_t n) {
    return static_cast<unsigned char>(bytes[n]);
  };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t group = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out += alphabet[(group >> 18) & 63];
    out += alphabet[(group >> 12) & 63];
    out += alphabet[(group >> 6) & 63];
    out += alphabet[group & 63];
  }
  auto rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t group = at(i) << 16;
    if (rest == 2)
      group |= at(i + 1) << 8;
    out += alphabet[(group >> 18) & 63];
    out += alphabet[(group >> 12) & 63];
    if (rest == 2)
      out += alphabet[(group >> 6) & 63];
  }
  return out;
}

std::string forge(std::string_view header_json, std::string_view payload_json,
                  std::string_view signature) {
  return base64url(header_json) + "." + base64url(payload_json) + "."
    + std::string{signature};
}

int64_t unix_now() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace livehub::test

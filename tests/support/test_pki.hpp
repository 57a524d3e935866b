// Certificates for the TLS tests, made at test time with the `openssl`
// command in a fresh temporary directory that goes with the object: a test
// certificate authority, a server certificate for 127.0.0.1 that it signed,
// and a second authority that signed nothing here.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <doctest/doctest.h>

namespace livehub::test {

struct test_pki {
  test_pki() {
    char tmpl[] = "/tmp/livehub-tls-test.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    cleanup.dir = dir;
    ca_cert = path("ca.pem");
    server_chain = path("server-chain.pem");
    server_key = path("server.key");
    other_ca_cert = path("other-ca.pem");
    other_ca_key = path("other-ca.key");
    std::ofstream{path("server.ext")}
      << "subjectAltName=IP:127.0.0.1\n"
         "basicConstraints=critical,CA:FALSE\n"
         "keyUsage=critical,digitalSignature,keyEncipherment\n"
         "extendedKeyUsage=serverAuth\n";
    // RSA 2048 (the common case), valid for two days, no passphrase.
    auto ca = [&](const std::string& name, const std::string& cn) {
      return "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN="
        + cn + "' -keyout " + path(name + ".key") + " -out "
        + path(name + ".pem")
        + " -addext basicConstraints=critical,CA:TRUE"
          " -addext keyUsage=critical,keyCertSign,cRLSign";
    };
    run(ca("ca", "livehub test CA"));
    run(ca("other-ca", "another CA"));
    run("openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "
        + server_key + " -out " + path("server.csr"));
    run("openssl x509 -req -days 2 -in " + path("server.csr") + " -CA "
        + ca_cert + " -CAkey " + path("ca.key") + " -CAcreateserial -out "
        + path("server.pem") + " -extfile " + path("server.ext"));
    // The certificate, then its chain (what a server sends).
    std::ofstream chain{server_chain};
    chain << std::ifstream{path("server.pem")}.rdbuf()
          << std::ifstream{ca_cert}.rdbuf();
    REQUIRE(chain.flush());
  }

  test_pki(const test_pki&) = delete;
  test_pki& operator=(const test_pki&) = delete;

  std::string path(const std::string& name) const {
    return dir + "/" + name;
  }

  static void run(const std::string& command) {
    INFO("command: " << command);
    REQUIRE(std::system((command + " >/dev/null 2>&1").c_str()) == 0);
  }

  /// Removes the directory, also when a command failed in the constructor.
  struct remover {
    std::string dir;
    ~remover() {
      std::error_code ignored;
      if (!dir.empty())
        std::filesystem::remove_all(dir, ignored);
    }
  } cleanup;

  std::string dir;
  /// The test CA's certificate: what a client trusts.
  std::string ca_cert;
  /// The server's certificate for IP 127.0.0.1, then the test CA's.
  std::string server_chain;
  std::string server_key;
  /// A CA that signed nothing the server holds, and its key.
  std::string other_ca_cert;
  std::string other_ca_key;
};

} // namespace livehub::test

// PostgresServer: a throw-away PostgreSQL server for tests, from the
// PostgreSQL 15 binaries Debian installs (/usr/lib/postgresql/15/bin).
//
// Start() runs initdb in a fresh temporary directory and starts the server
// on a free loopback port (trust authentication, fsync off: a test server's
// durability is not under test); the destructor stops it and removes the
// directory. When the tests run as root the server runs as the `postgres`
// user, since initdb refuses root (initdb: "cannot be run as root").
//
// Example:
//   absl::StatusOr<std::unique_ptr<PostgresServer>> pg =
//       PostgresServer::Start();
//   ASSERT_TRUE((*pg)->CreateDatabase("t1").ok());
//   std::string conninfo = (*pg)->Conninfo("t1");
#ifndef IPSRT_TESTS_TESTING_POSTGRES_SERVER_H_
#define IPSRT_TESTS_TESTING_POSTGRES_SERVER_H_

#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace ipsrt::testing {

inline constexpr char kPostgresBinDir[] = "/usr/lib/postgresql/15/bin";
// The one role that must authenticate with a password (scram-sha-256) over
// TCP; every other role is trusted.
inline constexpr char kPasswordUser[] = "ipsrt_password_user";

class PostgresServer {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "ipsrt-pg-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      return absl::InternalError("postgres test server: mkdtemp failed");
    }
    std::unique_ptr<PostgresServer> server(new PostgresServer(pattern));
    if (geteuid() == 0) {
      struct passwd* pw = getpwnam("postgres");
      if (pw == nullptr) {
        return absl::FailedPreconditionError(
            "postgres test server: running as root needs a postgres user");
      }
      if (chown(pattern.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        return absl::InternalError("postgres test server: chown failed");
      }
      server->as_user_ = "runuser -u postgres -- ";
    }
    server->port_ = FreePort();
    absl::Status s = server->Run(absl::StrCat(
        server->as_user_, kPostgresBinDir, "/initdb -D '", server->data_dir(),
        "' -A trust -U postgres --no-sync -E UTF8 --locale=C >'", server->dir_,
        "/initdb.log' 2>&1"));
    if (!s.ok()) return s;
    s = server->RequirePasswordFor(kPasswordUser);
    if (!s.ok()) return s;
    s = server->StartAgain();
    if (!s.ok()) return s;
    return server;
  }

  ~PostgresServer() {
    Stop().IgnoreError();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  std::string data_dir() const { return dir_ + "/data"; }

  // Conninfo is a libpq connection string for `database` as the superuser.
  std::string Conninfo(const std::string& database = "postgres") const {
    return absl::StrCat("host=127.0.0.1 port=", port_,
                        " user=postgres dbname=", database);
  }

  // StartAgain starts the (stopped) server on the same port and data.
  absl::Status StartAgain() {
    return Run(absl::StrCat(
        as_user_, kPostgresBinDir, "/pg_ctl -D '", data_dir(), "' -l '", dir_,
        "/server.log' -w -t 30 -o \"-p ", port_, " -k '", dir_,
        "' -c listen_addresses=127.0.0.1 -c fsync=off -c "
        "full_page_writes=off -c max_connections=300\" start >/dev/null"));
  }

  // Stop shuts the server down at once (fast mode: open sessions are
  // terminated, as in a restart of a production server).
  absl::Status Stop() {
    if (!std::filesystem::exists(data_dir() + "/postmaster.pid")) {
      return absl::OkStatus();
    }
    return Run(absl::StrCat(as_user_, kPostgresBinDir, "/pg_ctl -D '",
                            data_dir(), "' -m fast -w stop >/dev/null"));
  }

  absl::Status CreateDatabase(const std::string& name) {
    // FILE_COPY: copying template1's files is quicker than WAL-logging them
    // for a small test database.
    return Psql("postgres", absl::StrCat("CREATE DATABASE \"", name,
                                         "\" STRATEGY FILE_COPY"))
        .status();
  }

  // Psql runs `sql` in `database` with psql and returns its unaligned,
  // tuples-only output.
  absl::StatusOr<std::string> Psql(const std::string& database,
                                   const std::string& sql) const {
    std::string cmd =
        absl::StrCat(kPostgresBinDir, "/psql -X -q -At -v ON_ERROR_STOP=1 \"",
                     Conninfo(database), "\" <<'IPSRT_SQL_EOF' 2>&1\n", sql,
                     "\nIPSRT_SQL_EOF\n");
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return absl::InternalError("psql: popen failed");
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    int rc = pclose(p);
    if (rc != 0) return absl::InternalError(absl::StrCat("psql: ", out));
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

 private:
  explicit PostgresServer(std::string dir) : dir_(std::move(dir)) {}

  // RequirePasswordFor puts a scram-sha-256 rule for `role` before the
  // trust rules of pg_hba.conf (the file keeps its owner).
  absl::Status RequirePasswordFor(const std::string& role) {
    std::string path = data_dir() + "/pg_hba.conf";
    std::ifstream in(path);
    std::stringstream old;
    old << in.rdbuf();
    std::ofstream out(path, std::ios::trunc);
    out << "host all " << role << " 127.0.0.1/32 scram-sha-256\n" << old.str();
    out.close();
    if (!out) return absl::InternalError("cannot rewrite " + path);
    return absl::OkStatus();
  }

  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    return ntohs(addr.sin_port);
  }

  absl::Status Run(const std::string& cmd) const {
    int rc = std::system(cmd.c_str());
    if (rc != 0) {
      return absl::InternalError(
          absl::StrCat("postgres test server: command failed (", rc, "): ", cmd,
                       "; logs in ", dir_));
    }
    return absl::OkStatus();
  }

  std::string dir_;
  std::string as_user_;
  int port_ = 0;
};

}  // namespace ipsrt::testing

#endif  // IPSRT_TESTS_TESTING_POSTGRES_SERVER_H_

#include "harness.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

namespace ipsrt::e2e {

std::string WriteConfig(const TempDir& dir) {
  const std::string path = dir.File("ipsrtd.yaml");
  const std::string yaml = absl::StrCat(
      "server:\n"
      "  listen: 127.0.0.1:50051\n"
      "  shutdown_grace: 10s\n"
      "store:\n"
      "  kind: sqlite\n"
      "  sqlite:\n"
      "    path: ipsrt.db\n"
      "    synchronous: full\n"
      "workflows:\n"
      "  directories:\n"
      "    - ",
      IPSRT_WORKFLOWS_DIR,
      "\n"
      "logging:\n"
      "  level: info\n"
      "plugins:\n"
      "  - path: libipsrt_core_instruments.so\n"
      "    transport: in_process\n");
  if (absl::Status s = WriteFile(path, yaml); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::abort();
  }
  return path;
}

absl::StatusOr<std::unique_ptr<Ipsrtd>> Ipsrtd::Start(
    const std::string& config_path) {
  const std::string dir =
      std::filesystem::path(config_path).parent_path().string();
  const std::string port_file = absl::StrCat(dir, "/ipsrtd.port");
  // A port file left by an earlier run in the same directory is stale.
  std::filesystem::remove(port_file);
  absl::StatusOr<std::unique_ptr<ChildProcess>> process = ChildProcess::Spawn(
      {IPSRTD_BIN, absl::StrCat("--config=", config_path),
       "--listen=127.0.0.1:0", absl::StrCat("--port_file=", port_file)},
      absl::StrCat(dir, "/ipsrtd.log"));
  if (!process.ok()) return process.status();

  const absl::Time deadline = absl::Now() + kServerDeadline;
  while (absl::Now() < deadline) {
    absl::StatusOr<std::string> text = ReadFile(port_file);
    int port = 0;
    if (text.ok() &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port) &&
        port > 0) {
      return std::unique_ptr<Ipsrtd>(new Ipsrtd(*std::move(process), port));
    }
    if ((*process)->Exited()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "ipsrtd exited before serving; log:\n", (*process)->Log()));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "ipsrtd wrote no port file within ",
      absl::FormatDuration(kServerDeadline), "; log:\n", (*process)->Log()));
}

std::string Ipsrtd::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

absl::StatusOr<int> Ipsrtd::Terminate() {
  process_->Signal(SIGTERM);
  std::optional<int> status = process_->WaitForExit(kServerDeadline);
  if (!status.has_value()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "ipsrtd still running ", absl::FormatDuration(kServerDeadline),
        " after SIGTERM; log:\n", process_->Log()));
  }
  return *status;
}

namespace {

ProcessResult RunOrDie(const std::vector<std::string>& argv) {
  absl::StatusOr<ProcessResult> result = RunProcess(argv, absl::Seconds(30));
  if (!result.ok()) {
    // The binary is missing or unrunnable: no test can say anything.
    std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
    std::abort();
  }
  return *std::move(result);
}

}  // namespace

ProcessResult RunCli(const std::string& server,
                     const std::vector<std::string>& args) {
  std::vector<std::string> argv = {IPSRT_BIN,
                                   absl::StrCat("--server=", server)};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunOrDie(argv);
}

ProcessResult RunCliNoServer(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {IPSRT_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunOrDie(argv);
}

void Openssl(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  absl::StatusOr<ProcessResult> r = RunProcess(args, absl::Seconds(60));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->exit_code, 0) << r->err;
}

void MakeCertificates(const TempDir& dir) {
  auto f = [&](const char* name) { return dir.File(name); };
  Openssl(dir, {"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                f("ca.key"), "-out", f("ca.crt"), "-days", "2", "-subj",
                "/CN=ipsrt test CA"});
  ASSERT_TRUE(
      WriteFile(f("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
          .ok());
  for (const char* who : {"server", "client"}) {
    std::string key = f(absl::StrCat(who, ".key").c_str());
    std::string csr = f(absl::StrCat(who, ".csr").c_str());
    std::string crt = f(absl::StrCat(who, ".crt").c_str());
    Openssl(dir, {"req", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                  "-out", csr, "-subj", absl::StrCat("/CN=", who)});
    std::vector<std::string> sign = {"x509",   "-req",      "-in",
                                     csr,      "-CA",       f("ca.crt"),
                                     "-CAkey", f("ca.key"), "-CAcreateserial",
                                     "-out",   crt,         "-days",
                                     "2"};
    if (std::string(who) == "server") {
      sign.push_back("-extfile");
      sign.push_back(f("server.ext"));
    }
    Openssl(dir, sign);
  }
}

std::string ClockOffsetTo(absl::CivilSecond local, absl::TimeZone zone) {
  return absl::FormatDuration(absl::FromCivil(local, zone) - absl::Now());
}

absl::CivilSecond TodayAt(absl::TimeZone zone, int hour, int minute,
                          int second) {
  const absl::CivilDay today = absl::ToCivilDay(absl::Now(), zone);
  return absl::CivilSecond(today.year(), today.month(), today.day(), hour,
                           minute, second);
}

}  // namespace ipsrt::e2e

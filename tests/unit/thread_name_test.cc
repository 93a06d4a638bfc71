#include "common/thread_name.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace ipsrt {
namespace {

// ThreadComm reads the name the kernel keeps for thread `tid` of this
// process, as `ps -L` and perf show it.
std::string ThreadComm(long tid) {
  std::ifstream in(absl::StrCat("/proc/self/task/", tid, "/comm"));
  std::string name;
  std::getline(in, name);
  return name;
}

// NameOnNewThread starts a thread, names it `name` from here and returns
// the name the thread then reads for itself.
std::string NameOnNewThread(const std::string& name) {
  absl::Notification named;
  std::string seen;
  std::thread t([&] {
    named.WaitForNotification();
    seen = ThreadComm(syscall(SYS_gettid));
  });
  NameThread(t, name);
  named.Notify();
  t.join();
  return seen;
}

TEST(ThreadNameTest, TheKernelShowsTheName) {
  EXPECT_EQ(NameOnNewThread("store-writer"), "store-writer");
}

TEST(ThreadNameTest, ALongNameIsCutToFifteenBytes) {
  // pthread_setname_np refuses names over 15 bytes (ERANGE) and would keep
  // the old name; the helper cuts instead.
  EXPECT_EQ(NameOnNewThread("reminder-dispatcher-of-tenant"),
            "reminder-dispat");
  EXPECT_EQ(NameOnNewThread("exactly-15-byte"), "exactly-15-byte");
}

TEST(ThreadNameTest, OnlyTheNamedThreadIsRenamed) {
  const std::string before = ThreadComm(syscall(SYS_gettid));
  NameOnNewThread("other-thread");
  EXPECT_EQ(ThreadComm(syscall(SYS_gettid)), before);
}

}  // namespace
}  // namespace ipsrt

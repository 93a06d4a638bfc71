#include "common/thread_name.h"

#include <pthread.h>

#include <string>

namespace ipsrt {

void NameThread(std::thread& thread, absl::string_view name) {
  std::string cut(name.substr(0, kThreadNameMax));
  // Fails only for a name over 15 bytes (cut above) or a thread that has
  // ended and been joined; neither can happen here.
  pthread_setname_np(thread.native_handle(), cut.c_str());
}

}  // namespace ipsrt

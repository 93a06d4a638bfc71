// ScopedEnv: an environment variable set for the length of a scope, for
// tests whose code under test (ipsrtd, ipsrt, plugins, config loading)
// reads the environment.
#ifndef IPSRT_TESTS_TESTING_SCOPED_ENV_H_
#define IPSRT_TESTS_TESTING_SCOPED_ENV_H_

#include <cstdlib>
#include <optional>
#include <string>

namespace ipsrt::testing {

// ScopedEnv sets the environment variable `name` to `value` and, when the
// scope ends, puts back what the variable was (or unsets it). Processes
// started in the scope inherit the value. Not for tests that read or start
// processes from other threads while one changes the environment.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_.has_value()) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace ipsrt::testing

#endif  // IPSRT_TESTS_TESTING_SCOPED_ENV_H_

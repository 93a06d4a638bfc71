# The two Quick start commands (see README.md) and a few helpers. Every
# target that builds first installs missing Debian packages, so each is
# self-sufficient on a fresh Debian 12 machine.
PRESET ?= default
BUILD_DIR := build/$(PRESET)
CONFIG ?= config/ipsrtd.yaml

.PHONY: all deps configure build test run bench interop-deps format clean \
	package fuzz reliability bench-clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then cmake --preset $(PRESET); fi

build: configure
	cmake --build --preset $(PRESET)

# Node packages for the independent gRPC client used by the interop tests.
interop-deps: deps
	@bash scripts/install-interop-deps.sh

test: build interop-deps
	ctest --preset $(PRESET)

run: build
	$(BUILD_DIR)/engine/ipsrtd --config=$(CONFIG)

# SCALE_ENROLLMENTS: the large data set of the scale section (built once
# by ipsrt_datagen under $BENCH_TMPDIR or /tmp, then reused); 0 skips it.
SCALE_ENROLLMENTS ?= 1000000
bench: build
	PROFILE=1 SCALE_ENROLLMENTS=$(SCALE_ENROLLMENTS) bash bench/run.sh
	bash bench/diagnose.sh
	bash bench/metrics.sh
	bash bench/simulate.sh
	bash bench/footprint.sh

# Removes the data sets ipsrt_datagen built for `make bench`.
bench-clean:
	$(BUILD_DIR)/bench/ipsrt_datagen --enrollments=$(SCALE_ENROLLMENTS) --clean
	$(BUILD_DIR)/bench/ipsrt_datagen --enrollments=10000 --clean

# The Debian package (CPack): build/$(PRESET)/ipsrtd_<version>_<arch>.deb.
package: build
	cd $(BUILD_DIR) && cpack -G DEB

# libFuzzer with ASan and UBSan (clang-14): each target for FUZZ_SECONDS
# (docs/fuzzing.md). FUZZ_TARGETS picks some ("condition scenario").
FUZZ_SECONDS ?= 60
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" bash scripts/fuzz.sh

# kill -9 cycles under write load (CYCLES, default 20) and the store fault
# suite, printed as tables (docs/durability.md).
reliability: build
	BUILD_DIR=$(BUILD_DIR) bash scripts/reliability.sh

format:
	find engine tests bench plugins -name '*.cc' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf build

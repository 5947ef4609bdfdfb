# approvald — `make run` and `make test` do everything on a fresh Debian 12 machine with Swift.
SWIFT ?= swift
CONFIG ?= Config/approvald.toml
# System libraries the build links against, and the programs the tests drive the broker with.
BUILD_PACKAGES := pkg-config libnghttp2-dev libevent-dev libssl-dev libsqlite3-dev libhiredis-dev libhttp-parser-dev \
	libqrencode-dev libjemalloc-dev
TEST_PACKAGES := curl nghttp2-client openssl sqlite3 prometheus python3 python3-venv redis-server systemd lua-check \
	zbar-tools librsvg2-bin tmux chromium chromium-driver
# What the benchmarks measure with: h2load (nghttp2-client), callgrind (valgrind), taskset (util-linux), perf
# (linux-perf, bench/redis/run PERF=1), what bench/broker/recovery fills a store with (sqlite3, bc), and the clocks
# bench/redis/forgetting sets ahead (faketime).
BENCH_PACKAGES := nghttp2-client valgrind util-linux linux-perf python3 sqlite3 bc faketime
# What `approvald --version` and approvald_build_info say: the release, and the commit built (docker/Dockerfile passes
# COMMIT, having no .git).
VERSION ?= 0.21.0
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
BUILD_INFO := Sources/CBuildInfo/generated/build_info.h
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The contract check's and deploy/check's Python packages (schemathesis, kubernetes-validate and the rest, pinned), in
# a virtual environment of their own.
CONTRACT_VENV := .build/contract-venv
BIN_PATH = $(shell $(SWIFT) build --show-bin-path)
RELEASE_BIN_PATH = $(shell $(SWIFT) build -c release --show-bin-path)

# Sanitizer builds, each in a scratch path of its own; a report of either sanitizer, from a test or from the broker
# the end-to-end tests start, is written under REPORTS, printed and fails the run (the end-to-end tests still run
# when the unit tests fail, so that one CI log shows every report). UndefinedBehaviorSanitizer has no Swift
# support on Linux (`-sanitize=undefined` is refused), so ASan stands alone.
SANITIZER_REPORTS = $(CURDIR)/.build-sanitize-reports
# Leaks are looked for in the broker and the tools the tests start (APPROVALD_CHILD_ASAN_OPTIONS), not in the test
# runner, whose fixtures and Foundation's Process and Pipe are left to the end of the process by design.
# APPROVALD_SANITIZED tells the tests that figures such as RSS are the sanitizer's (redzones, quarantine).
ASAN_COMMON = log_path=$(SANITIZER_REPORTS)/asan:suppressions=$(CURDIR)/Tests/asan.supp
SANITIZER_ENV = SWIFT_BACKTRACE=enable=no APPROVALD_SANITIZED=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/Fuzz/lsan.supp:print_suppressions=0 \
	ASAN_OPTIONS=$(ASAN_COMMON):detect_leaks=0 \
	APPROVALD_CHILD_ASAN_OPTIONS=$(ASAN_COMMON):detect_leaks=1 \
	TSAN_OPTIONS=log_path=$(SANITIZER_REPORTS)/tsan:suppressions=$(CURDIR)/Tests/tsan.supp
# The fuzz targets (Tests/Fuzz/Targets), built with libFuzzer and ASan; lld links them (gold fails on their
# debug information). FUZZ_SECONDS each, 30 in `make test`.
FUZZ_SECONDS ?= 60
TEST_FUZZ_SECONDS ?= 30
FUZZ_TARGETS := FuzzJSON FuzzIdPSignature FuzzDeviceAuthorization FuzzRouter FuzzEventStream FuzzConfiguration \
	FuzzH2Server FuzzHTTP1Server FuzzOIDCRequests FuzzEnrollment
FUZZ_BUILD := APPROVALD_FUZZ=1 $(SWIFT) build -c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address \
	-Xswiftc -enable-testing -Xswiftc -use-ld=lld

.PHONY: all deps test-deps bench-deps build-info build build-release run test check sanitize sanitize-address sanitize-thread \
	fuzz contract browser lint format bench clean

all: build

# Installs whatever of $(1) is missing, with apt-get.
define apt_install
	@missing=$$(for package in $(1); do dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'ok installed' || echo $$package; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

deps: build-info
	$(call apt_install,$(BUILD_PACKAGES))

# Rewritten only when VERSION or COMMIT changed; build_info.c is touched then, as it may have been compiled before the
# header existed.
build-info:
	@mkdir -p $(dir $(BUILD_INFO))
	@printf '#define APPROVALD_VERSION "%s"\n#define APPROVALD_COMMIT "%s"\n' '$(VERSION)' '$(COMMIT)' > $(BUILD_INFO).new
	@if cmp -s $(BUILD_INFO).new $(BUILD_INFO); then rm $(BUILD_INFO).new; \
	else mv $(BUILD_INFO).new $(BUILD_INFO) && touch Sources/CBuildInfo/build_info.c; fi

test-deps: deps
	$(call apt_install,$(TEST_PACKAGES))

bench-deps: deps
	$(call apt_install,$(BENCH_PACKAGES))

build: deps
	$(SWIFT) build

# SWIFT_BUILD_FLAGS: more flags for the release build (docker/Dockerfile links the Swift runtime in with it).
build-release: deps
	$(SWIFT) build -c release $(SWIFT_BUILD_FLAGS)

# Serves h2c on 127.0.0.1:8080 and TLS on 127.0.0.1:8443 with a development certificate made on first run.
run: build
	@[ -f data/tls/cert.pem ] || $(BIN_PATH)/approvald dev-cert --certificate data/tls/cert.pem --private-key data/tls/key.pem
	exec $(BIN_PATH)/approvald serve --config $(CONFIG)

# Everything CI runs: the checks below, both sanitizer runs, and every fuzz target for TEST_FUZZ_SECONDS.
test: check sanitize
	$(MAKE) fuzz FUZZ_SECONDS=$(TEST_FUZZ_SECONDS)

# Builds once, checks formatting, runs the unit and in-process tests, then the end-to-end tests against the debug
# binary, then the release binary's allocations per create and per sign-in against their budgets
# (bench/broker/allocation-budget), then the end-to-end tests against the release binary, whose optimised code paths
# differ, and once more with the release binary on the Redis store (a redis-server of each broker's own), then an app
# outside the repository that depends on ApprovalKit by path (Tests/SDKPackage/run), then the deployment files against
# the release binary (deploy/check), then the contract check on the release binary, on SQLite and on Redis, then a
# relying party and a headless browser through the OpenID provider (Tests/Contract/browser). The end-to-end tests block
# on processes and sockets: run apart, they cannot starve the in-process tests' async work of threads.
check: test-deps $(CONTRACT_VENV)/ready
	$(SWIFT) build --build-tests
	$(MAKE) lint
	$(SWIFT) test --skip-build --skip EndToEndTests
	APPROVALD_BIN=$(BIN_PATH)/approvald $(SWIFT) test --skip-build --filter EndToEndTests
	$(SWIFT) build -c release --product approvald
	bench/broker/allocation-budget
	APPROVALD_BIN=$(RELEASE_BIN_PATH)/approvald $(SWIFT) test --skip-build --filter EndToEndTests
	APPROVALD_TEST_STORE=redis APPROVALD_BIN=$(RELEASE_BIN_PATH)/approvald \
		$(SWIFT) test --skip-build --filter EndToEndTests
	Tests/SDKPackage/run $(RELEASE_BIN_PATH)/approvald
	$(CONTRACT_VENV)/bin/python deploy/check $(RELEASE_BIN_PATH)/approvald
	Tests/Contract/run $(RELEASE_BIN_PATH)/approvald $(CONTRACT_VENV)
	APPROVALD_CONTRACT_STORE=redis APPROVALD_CONTRACT_EXAMPLES=60 \
		Tests/Contract/run $(RELEASE_BIN_PATH)/approvald $(CONTRACT_VENV)
	Tests/Contract/browser $(RELEASE_BIN_PATH)/approvald $(CONTRACT_VENV)

# The unit, in-process and end-to-end tests under AddressSanitizer (with LeakSanitizer), then under
# ThreadSanitizer: the loop, the SQLite writer and the client threads share data through a few queues.
sanitize: sanitize-address sanitize-thread

sanitize-address sanitize-thread: sanitize-%: test-deps
	$(SWIFT) build --build-tests --scratch-path .build-$* --sanitize=$*
	rm -rf $(SANITIZER_REPORTS) && mkdir -p $(SANITIZER_REPORTS)
	@status=0; \
	$(SANITIZER_ENV) $(SWIFT) test --skip-build --scratch-path .build-$* --skip EndToEndTests || status=1; \
	$(SANITIZER_ENV) APPROVALD_BIN=$(CURDIR)/.build-$*/debug/approvald \
		$(SWIFT) test --skip-build --scratch-path .build-$* --filter EndToEndTests || status=1; \
	if [ -n "$$(ls -A $(SANITIZER_REPORTS))" ]; then \
		echo "$* sanitizer reports:"; cat $(SANITIZER_REPORTS)/*; status=1; \
	fi; \
	exit $$status

# Builds every fuzz target, then runs each for FUZZ_SECONDS (Tests/Fuzz/run prints their executions).
fuzz: deps
	@for target in $(FUZZ_TARGETS); do $(FUZZ_BUILD) --product $$target || exit 1; done
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" Tests/Fuzz/run

# The broker against its contract: approvald simulate, promtool on /metrics, schemathesis on docs/openapi.yaml,
# docker/check (Tests/Contract/run).
contract: test-deps $(CONTRACT_VENV)/ready
	$(SWIFT) build -c release --product approvald
	Tests/Contract/run $(RELEASE_BIN_PATH)/approvald $(CONTRACT_VENV)

# authlib and headless Chromium sign in through the OpenID provider (Tests/Contract/browser).
browser: test-deps $(CONTRACT_VENV)/ready
	$(SWIFT) build -c release --product approvald
	Tests/Contract/browser $(RELEASE_BIN_PATH)/approvald $(CONTRACT_VENV)

$(CONTRACT_VENV)/ready: Tests/Contract/requirements.txt
	python3 -m venv $(CONTRACT_VENV)
	$(CONTRACT_VENV)/bin/pip install --quiet --disable-pip-version-check -r Tests/Contract/requirements.txt
	touch $@

# The Swift sources with swift-format, the Redis functions with luacheck (settings in .luacheckrc), and the module
# graph in docs/architecture.md against Package.swift.
lint:
	$(SWIFT) format lint --strict --recursive Package.swift Sources Tests bench
	luacheck --quiet Sources/RedisStore/functions.lua
	docs/module-graph --check

format:
	$(SWIFT) format --in-place --recursive Package.swift Sources Tests bench

# Wall-clock figures (h2load, RSS), then instruction counts (callgrind) and CPU time per request, each against the
# bare reference server.
bench: build-release bench-deps
	bench/h2-ceiling/run
	bench/h2-ceiling/instructions
	bench/h2-ceiling/cpu
	bench/broker/run

clean:
	rm -rf .build .build-address .build-thread .build-fuzz $(SANITIZER_REPORTS)

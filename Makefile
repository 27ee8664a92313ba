# Strait build. `make` builds build/strait-controller and build/strait-dataplane;
# `make run` starts the demo stack; `make test` installs what it needs and runs every suite
# (unit, end-to-end, then both again under AddressSanitizer + UndefinedBehaviorSanitizer).
# SAN=1 BUILD=build/asan builds the sanitizer variant into its own folder.

BUILD ?= build
SAN ?=
CC ?= cc

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS_ALL := -std=gnu11 -D_GNU_SOURCE -O2 -g $(WARN) -Icommon -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS_ALL := $(EXTRA_LDFLAGS)
ifeq ($(SAN),1)
CFLAGS_ALL += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS_ALL += -fsanitize=address,undefined
endif

# common/ links libev for adminsrv, the admin HTTP server both binaries share
COMMON_LIBS := -lev -lyajl -lz -lm
CTRL_LIBS := -lcurl -lyaml -lssl -lcrypto -lpcre2-8 $(COMMON_LIBS)
DP_LIBS := -lssl -lcrypto -lpcre2-8 -lpthread $(COMMON_LIBS)
# strait-dataplane itself does not link OpenSSL: its TLS code is the module strait-tls.so,
# loaded on first use (dataplane/tlsmod.h); the binary exports its symbols for the module.
DP_BIN_LIBS := -rdynamic -lpcre2-8 -lpthread $(COMMON_LIBS)
# The module links OpenSSL statically when libssl.a and libcrypto.a are installed (Debian's
# libssl-dev ships them), keeping only what it uses (--gc-sections), none of OpenSSL's symbols
# exported (--exclude-libs) and compact relative relocations (DT_RELR): the sidecar's idle RSS
# falls by ~1.3 MiB (docs/performance.md, mesh run 6). The price: a libssl3 security update
# reaches the data plane only with a rebuild of strait-tls.so (as an image rebuild does).
# TLSMOD_STATIC=0 (the default when the archives are missing) links the shared libraries.
TLSMOD_STATIC ?= $(if $(filter /%,$(shell $(CC) -print-file-name=libcrypto.a)),1,0)
ifeq ($(TLSMOD_STATIC),1)
TLSMOD_LIBS := -Wl,--gc-sections -Wl,--exclude-libs,ALL -Wl,-z,pack-relative-relocs \
	-Wl,-Bstatic -lssl -lcrypto -Wl,-Bdynamic -lyajl -lpthread
else
TLSMOD_LIBS := -lssl -lcrypto -lyajl
endif
TEST_LIBS := -lcmocka

COMMON_SRC := $(wildcard common/*.c)
CTRL_SRC := $(filter-out controller/main.c,$(wildcard controller/*.c))
DP_SRC := $(filter-out dataplane/main.c dataplane/tlsmod.c dataplane/tlsmod_export.c,$(wildcard dataplane/*.c))
TLSMOD_SRC := dataplane/tls.c dataplane/tls_upstream.c dataplane/tp_tls.c dataplane/tls_mesh.c \
	dataplane/tlsmod_export.c
obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
picobj = $(patsubst %.c,$(BUILD)/pic/%.o,$(1))

UNIT_SRC := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRC))

BINS := $(BUILD)/strait-controller $(BUILD)/strait-dataplane $(BUILD)/strait-tls.so

.PHONY: all deps run test unit unit-bins unit-run e2e asan bench bench-cluster check-style format clean \
	fuzz-build fuzz
all: $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<
$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fPIC -fvisibility=hidden -c -o $@ $<

$(BUILD)/libcommon.a: $(call obj,$(COMMON_SRC))
	@rm -f $@; ar rcs $@ $^
$(BUILD)/libcontroller.a: $(call obj,$(CTRL_SRC))
	@rm -f $@; ar rcs $@ $^
$(BUILD)/libdataplane.a: $(call obj,$(DP_SRC))
	@rm -f $@; ar rcs $@ $^

$(BUILD)/strait-controller: $(BUILD)/obj/controller/main.o $(BUILD)/libcontroller.a $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(CTRL_LIBS)
$(BUILD)/strait-dataplane: $(BUILD)/obj/dataplane/main.o $(BUILD)/obj/dataplane/tlsmod.o \
		$(BUILD)/libdataplane.a $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(DP_BIN_LIBS)
$(BUILD)/strait-tls.so: $(call picobj,$(TLSMOD_SRC))
	$(CC) $(LDFLAGS_ALL) -shared -o $@ $^ $(TLSMOD_LIBS)

# Unit tests mirror the source tree: tests/unit/<common|controller|dataplane>/.../test_*.c.
# A test may #include the .c under test; the static libraries supply everything else.
$(BUILD)/unit/common/%: tests/unit/common/%.c $(BUILD)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(filter %.a,$^) $(COMMON_LIBS) $(TEST_LIBS)
$(BUILD)/unit/controller/%: tests/unit/controller/%.c $(BUILD)/libcontroller.a $(BUILD)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Icontroller $(LDFLAGS_ALL) -o $@ $< $(filter %.a,$^) $(CTRL_LIBS) $(TEST_LIBS)
$(BUILD)/unit/dataplane/%: tests/unit/dataplane/%.c $(BUILD)/libdataplane.a $(BUILD)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Idataplane $(LDFLAGS_ALL) -o $@ $< $(filter %.a,$^) $(DP_LIBS) $(TEST_LIBS)

deps:
	@tools/deps.sh

# Ctrl-C (130) or SIGTERM (143) is how the demo is meant to stop: not a failure.
run: deps all
	@tools/run-demo.sh $(BUILD); rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 130 ] || [ $$rc -eq 143 ]

unit-bins: $(UNIT_BIN)
unit: deps unit-bins unit-run
unit-run: unit-bins
	@tools/run-unit.sh $(BUILD) $(UNIT_BIN)

e2e: deps all
	@python3 tests/e2e/run.py --bin $(BUILD)

asan: deps
	@$(MAKE) --no-print-directory SAN=1 BUILD=build/asan all unit-bins

# Every suite, plain then sanitized; prints one closing "total: N passed, N failed" line.
test: deps
	@tools/run-tests.sh

# libFuzzer targets (tests/fuzz/, docs/fuzzing.md): built with clang straight from the sources
# they exercise, into build/fuzz/. `make fuzz` runs each over its checked-in corpus for
# FUZZ_SECONDS; new inputs go to a temporary folder, never into the repository.
FUZZ_CC ?= clang
FUZZ_BUILD ?= build/fuzz
FUZZ_SECONDS ?= 20
FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $(WARN) -Icommon -Idataplane \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_TARGETS := $(FUZZ_BUILD)/fuzz_http1 $(FUZZ_BUILD)/fuzz_snapwire

$(FUZZ_BUILD)/fuzz_http1: tests/fuzz/fuzz_http1.c dataplane/http1.c dataplane/http1.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^)
$(FUZZ_BUILD)/fuzz_snapwire: tests/fuzz/fuzz_snapwire.c common/snapwire.c common/snapwire.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) -lyajl -lz

fuzz-build: $(FUZZ_TARGETS)
fuzz: fuzz-build
	@tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# bench: the data plane side by side with nginx and HAProxy (bench/run.sh), then the controller
# in cluster mode at scale against the stand-in API server (bench/cluster.py).
bench: deps all
	@bench/run.sh
	@python3 bench/cluster.py
	@python3 bench/routes.py
	@python3 bench/balance.py
bench-cluster: deps all
	@python3 bench/cluster.py

check-style:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(BUILD)/pic $(BUILD)/unit -name '*.d' 2>/dev/null)

# bench-tools: load generators the benchmarks need beyond wrk and h2load (bench/tlsload.c:
# concurrent full or resumed TLS handshakes, for bench/tls.sh).
.PHONY: bench-tools bench-tls
bench-tools: $(BUILD)/tlsload
$(BUILD)/tlsload: bench/tlsload.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< -lssl -lcrypto
bench: bench-tools
# bench-mesh: issue 10's sidecar targets (bench/mesh.py, root: network namespaces it makes and
# removes): added p99 per sidecar hop at 1,000 req/s (bench/meshload.c, open loop), the
# sidecar's idle RSS and with 5,000 Services, its CPU per 1,000 req/s; HAProxy and nginx doing
# the sidecars' job in the same rounds (bench/meshpeers.py, installed when missing), as ratios.
.PHONY: bench-mesh
$(BUILD)/meshload: bench/meshload.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $<
bench-mesh: deps all $(BUILD)/meshload
	@BUILD=$(BUILD) python3 bench/mesh.py
bench-tls: deps all bench-tools
	@BUILD=$(BUILD) bench/tls.sh
# bench-router: the router micro-benchmark (bench/routerbench.c, issue 7's routing target):
# ns per router_route for 10 .. 100,000 routes, Ingress-style and mixed Gateway matches.
# bench-routes: the same target end to end (bench/routes.py): data-plane CPU per request
# with 10 and with 10,000 Gateway routes, through wrk.
.PHONY: bench-router
$(BUILD)/routerbench: bench/routerbench.c $(BUILD)/libdataplane.a $(BUILD)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Idataplane $(LDFLAGS_ALL) -o $@ $< $(filter %.a,$^) $(DP_LIBS)
bench-router: deps $(BUILD)/routerbench
	@$(BUILD)/routerbench
# bench-idle: the idle data plane's RSS with an empty snapshot (issue 4's target), by mapping.
.PHONY: bench-idle
bench-idle: deps all
	@BUILD=$(BUILD) bench/idlerss.sh
# bench-balancer: the balancer micro-benchmark (bench/balbench.c, issue 9's target): ns per
# pick among 1,000 endpoints for every algorithm, pinned to one CPU.
.PHONY: bench-balancer
$(BUILD)/balbench: bench/balbench.c $(BUILD)/libdataplane.a $(BUILD)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Idataplane $(LDFLAGS_ALL) -o $@ $< $(filter %.a,$^) $(DP_LIBS)
bench-balancer: deps $(BUILD)/balbench
	@taskset -c 0 $(BUILD)/balbench
# bench-balance: issue 9's end-to-end balancing targets (bench/balance.py): ewma vs
# round_robin requests/s, and p99 behind a slow backend against nginx and HAProxy.
.PHONY: bench-balance
bench-balance: deps all
	@python3 bench/balance.py --build $(BUILD)
.PHONY: bench-routes
bench-routes: deps all
	@python3 bench/routes.py --build $(BUILD)

# image: the container image (Dockerfile) with the first engine that is there: docker when its
# engine answers (`docker info`), else podman, else buildah; none: a clear error. IMAGE defaults
# to strait:<the chart's appVersion> (IMAGE_TAG). tests/install/run.py checks the engine choice
# with stub engines (none runs on the test machines).
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*.*/\1/p' charts/strait/Chart.yaml)
IMAGE ?= strait:$(IMAGE_TAG)
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
.PHONY: image
image:
	@args='-t $(IMAGE) -f Dockerfile --build-arg VERSION=$(IMAGE_TAG) --build-arg REVISION=$(REVISION) .'; \
	if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
	  echo "image: docker build $$args"; docker build $$args; \
	elif command -v podman >/dev/null 2>&1; then \
	  echo "image: podman build $$args"; podman build $$args; \
	elif command -v buildah >/dev/null 2>&1; then \
	  echo "image: buildah bud $$args"; buildah bud $$args; \
	else \
	  echo "image: no container engine: neither a docker engine (docker info failed or no docker)," \
	       "nor podman, nor buildah is available; install one to build $(IMAGE)" >&2; exit 1; \
	fi

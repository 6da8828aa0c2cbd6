# splitnve build.  Everything lands under $(BUILD) (default build/); binaries in $(BUILD)/bin.
#
#   make            build libraries, daemons, ctl tools, tests and benchmarks (stops, naming
#                   them, if packages are missing: `make deps` as root installs them)
#   make deps       install the missing Debian packages (scripts/install-deps.sh)
#   make check      install missing packages, build, run every test (plain and ASan+UBSan),
#                   replay the kept fuzz inputs
#   make demo       install missing packages, build, run the whole system on this machine
#   make fuzz       run each libFuzzer target for FUZZ_SECONDS (default 300)
#   make bench      install missing packages, build and run the benchmarks in bench/
#   make install    install into $(DESTDIR)$(PREFIX)
#   SAN=1           build with ASan+UBSan (clang); SAN=ubsan: UBSan only (runs inside UML)
#
# $(BUILD)/.build-flags records what the build was made with (compiler, flags, sanitizer
# mode, libraries, version); everything built depends on it, so a change rebuilds it all.
#
# Source layout conventions (new files need no Makefile change):
#   lib/*.c                      -> libsplitnve.a / libsplitnve.so
#   nnve-daemon/main.c           -> bin/nnve-daemon, nnve-daemon/nnvectl.c -> bin/nnvectl,
#   nnve-daemon/*.c (the rest)   -> libnnve.a (linked into the daemon and the unit tests)
#   tnve-agent/  likewise        -> bin/tnve-agent, bin/tnvectl, libtnve.a
#   tests/unit/test-*.c          -> one Check suite each
#   tests/tools/*.c              -> test programs used by the integration tests
#   tests/fuzz/fuzz-*.c          -> libFuzzer targets (clang)
#   bench/*.c                    -> benchmark programs

BUILD   ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
SAN     ?= 0
FUZZ_SECONDS ?= 300

PKGS := libuv openssl libxml-2.0 libvirt jansson inih sqlite3 libmnl libnftables
# The Debian package that provides each pkg-config module (scripts/install-deps.sh installs them).
DEB_libuv := libuv1-dev
DEB_openssl := libssl-dev
DEB_libxml-2.0 := libxml2-dev
DEB_libvirt := libvirt-dev
DEB_jansson := libjansson-dev
DEB_inih := libinih-dev
DEB_sqlite3 := libsqlite3-dev
DEB_libmnl := libmnl-dev
DEB_libnftables := libnftables-dev
DEB_check := check
# Evaluated only when something is about to be built (see $(FLAGS_STAMP)).
PKG_MISSING = $(foreach p,$(PKGS) check,$(if $(shell pkg-config --exists $(p) 2>/dev/null && echo y),,$(p)))
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

ifeq ($(SAN),1)
CC      := clang
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN   := -fsanitize=address,undefined
else ifeq ($(SAN),ubsan)
# UBSan alone: for programs that run inside User-Mode Linux, where ASan cannot map its shadow.
CC      := clang
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=undefined -fno-sanitize-recover=all
LDSAN   := -fsanitize=undefined
else
CC      ?= cc
OPT     ?= -O2 -g
LDSAN   :=
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC -MMD -MP -Ilib $(PKG_CFLAGS)
LDFLAGS := $(LDSAN)
LIBS    := $(PKG_LIBS) -lm -lpthread

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
SONAME_MAJOR := 1
CFLAGS  += -DSPLITNVE_VERSION='"$(VERSION)"'

LIB_SRC   := $(wildcard lib/*.c)
NNVE_MAIN := nnve-daemon/main.c
NNVE_CTL  := nnve-daemon/nnvectl.c
NNVE_SRC  := $(filter-out $(NNVE_MAIN) $(NNVE_CTL),$(wildcard nnve-daemon/*.c))
TNVE_MAIN := tnve-agent/main.c
TNVE_CTL  := tnve-agent/tnvectl.c
TNVE_SRC  := $(filter-out $(TNVE_MAIN) $(TNVE_CTL),$(wildcard tnve-agent/*.c))
UNIT_SRC  := $(wildcard tests/unit/test-*.c)
TOOL_SRC  := $(wildcard tests/tools/*.c)
BENCH_SRC := $(wildcard bench/*.c)
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz-*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

# What the build was made with.  The stamp is rewritten only when this text changes, and
# every object, archive, library and program depends on it: a change of compiler, flags,
# sanitizer mode, libraries or version rebuilds everything it affects.
FLAGS_STAMP := $(BUILD)/.build-flags
BUILD_FLAGS := CC=$(CC) CFLAGS=$(CFLAGS) CHECK_CFLAGS=$(CHECK_CFLAGS) LDFLAGS=$(LDFLAGS) \
               LIBS=$(LIBS) CHECK_LIBS=$(CHECK_LIBS) VERSION=$(VERSION)
FUZZ_STAMP  := build/fuzz/.build-flags

LIB_A    := $(BUILD)/lib/libsplitnve.a
LIB_SO   := $(BUILD)/lib/libsplitnve.so.$(SONAME_MAJOR)
NNVE_A   := $(BUILD)/lib/libnnve.a
TNVE_A   := $(BUILD)/lib/libtnve.a
BINS     := $(if $(wildcard $(NNVE_MAIN)),$(BUILD)/bin/nnve-daemon) \
            $(if $(wildcard $(NNVE_CTL)),$(BUILD)/bin/nnvectl) \
            $(if $(wildcard $(TNVE_MAIN)),$(BUILD)/bin/tnve-agent) \
            $(if $(wildcard $(TNVE_CTL)),$(BUILD)/bin/tnvectl)
UNITS    := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
TOOLS    := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRC))
BENCHES  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
FUZZERS  := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))

# Archives listed in link order: daemon internals first, then the shared library.
APP_ARCHIVES := $(if $(NNVE_SRC),$(NNVE_A)) $(if $(TNVE_SRC),$(TNVE_A)) $(LIB_A)

.PHONY: FORCE all bins deps check check-plain check-san fuzz fuzz-replay bench demo demo-shell install clean
.DEFAULT_GOAL := all
# Test, tool and bench objects are intermediates of pattern rules: keep them.
.SECONDARY:

all: $(LIB_A) $(LIB_SO) $(BINS) $(UNITS) $(TOOLS) $(BENCHES)

# The daemons and ctl tools alone (e.g. `make BUILD=build/ubsan SAN=ubsan bins` for UML).
bins: $(BINS)

# stamp_rule: refuses to build while packages are missing, then writes BUILD_FLAGS-like
# text ($1) into $@ only if it differs from what is there.
define stamp_rule
	@missing='$(strip $(PKG_MISSING))'; if [ -n "$$missing" ]; then \
	    echo "splitnve: cannot build: missing pkg-config module(s): $$missing" >&2; \
	    echo "splitnve: Debian package(s): $(foreach p,$(PKG_MISSING),$(or $(DEB_$(p)),$(p)))$(if $(shell command -v pkg-config),, pkg-config)" >&2; \
	    echo "splitnve: run 'make deps' as root to install them (make demo and make check do it first)" >&2; \
	    exit 1; fi
	@mkdir -p $(dir $@)
	@printf '%s\n' '$(subst ','\'',$(1))' >$@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else \
	    [ ! -f $@ ] || echo "build flags changed: rebuilding $(dir $@)"; mv -f $@.tmp $@; fi
endef

$(FLAGS_STAMP): FORCE
	$(call stamp_rule,$(BUILD_FLAGS))

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIB_A): $(call obj,$(LIB_SRC)) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $(filter %.o,$^)

$(LIB_SO): $(call obj,$(LIB_SRC)) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libsplitnve.so.$(SONAME_MAJOR) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIBS)
	ln -sf libsplitnve.so.$(SONAME_MAJOR) $(BUILD)/lib/libsplitnve.so

$(NNVE_A): $(call obj,$(NNVE_SRC)) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $(filter %.o,$^)

$(TNVE_A): $(call obj,$(TNVE_SRC)) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $(filter %.o,$^)

$(BUILD)/bin/nnve-daemon: $(call obj,$(NNVE_MAIN)) $(APP_ARCHIVES) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(APP_ARCHIVES) $(LIBS)

$(BUILD)/bin/nnvectl: $(call obj,$(NNVE_CTL)) $(APP_ARCHIVES) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(APP_ARCHIVES) $(LIBS)

$(BUILD)/bin/tnve-agent: $(call obj,$(TNVE_MAIN)) $(APP_ARCHIVES) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(APP_ARCHIVES) $(LIBS)

$(BUILD)/bin/tnvectl: $(call obj,$(TNVE_CTL)) $(APP_ARCHIVES) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(APP_ARCHIVES) $(LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(APP_ARCHIVES) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(APP_ARCHIVES) $(CHECK_LIBS) $(LIBS)

$(BUILD)/obj/tests/unit/%.o: tests/unit/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Wno-missing-prototypes -DSRCDIR='"$(CURDIR)"' -c -o $@ $<

$(BUILD)/tests/tools/%: $(BUILD)/obj/tests/tools/%.o $(APP_ARCHIVES) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(APP_ARCHIVES) $(LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(APP_ARCHIVES) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(APP_ARCHIVES) $(LIBS)

# libFuzzer targets always use clang and compile the library sources in directly.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Ilib $(PKG_CFLAGS) -DSPLITNVE_VERSION='"$(VERSION)"' \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
$(FUZZ_STAMP): FORCE
	$(call stamp_rule,FUZZ_CFLAGS=$(FUZZ_CFLAGS) LIBS=$(PKG_LIBS) -lm -lpthread)

# A white-box target that includes a library source ('#include "sncp-tls.c"') leaves it out.
fuzz_included = $(patsubst %,lib/%,$(shell sed -n 's/^\#include "\(.*\.c\)"/\1/p' $(1)))
build/fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(wildcard lib/*.h) $(FUZZ_STAMP)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(filter-out $(call fuzz_included,$<),$(LIB_SRC)) $(PKG_LIBS) -lm -lpthread

deps:
	@scripts/install-deps.sh

FORCE:

# The tests that boot User-Mode Linux (UBSan inside UML) and the long whole-system ones
# run once, in the sanitizer stage (scripts/run-tests.sh --plain-stage).
check: deps
	$(MAKE) check-plain RUN_TESTS_FLAGS=--plain-stage
	$(MAKE) check-san
	$(MAKE) fuzz-replay
	@echo "make check: all stages passed"

check-plain: all
	scripts/run-tests.sh $(RUN_TESTS_FLAGS) $(BUILD)

check-san:
	$(MAKE) BUILD=build/asan SAN=1 all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    scripts/run-tests.sh build/asan

fuzz-replay: $(FUZZERS)
	scripts/fuzz.sh replay

fuzz: $(FUZZERS)
	scripts/fuzz.sh run $(FUZZ_SECONDS)

# demo, demo-shell and bench install what is missing, then build in a new make: its
# pkg-config flags are read after the install, never before.
bench: deps
	$(MAKE) all
	scripts/run-bench.sh $(BUILD)
soak: all ; scripts/soak.sh $(BUILD)  # the long model-based random test (SOAK_SEEDS, SOAK_OPS)

demo: deps
	$(MAKE) all
	scripts/demo.sh $(BUILD)

demo-shell: deps
	$(MAKE) all
	scripts/demo.sh --shell $(BUILD)

install: all
	scripts/install.sh "$(BUILD)" "$(DESTDIR)" "$(PREFIX)" "$(VERSION)"

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# svcd — build, run, test, install, package, bench, fuzz.
#
# `make` builds build/svcd and build/svc. `make asan` builds the same into
# build-asan/ with AddressSanitizer + UndefinedBehaviorSanitizer. `make test`
# installs what is missing, builds both, and runs every test against both
# (after the unit tests, a bounded libFuzzer smoke run: 15 s per target).
# `make fuzz` builds and runs every libFuzzer target for FUZZ_SECONDS (test/fuzz/fuzz.mk).

VERSION   := 0.1.0
CC        ?= gcc
PKGS      := yaml-0.1 libsystemd openssl jansson sqlite3 libmongoc-1.0 libcap
CFLAGS    ?= -O2 -g
CFLAGS    += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
             -fno-strict-aliasing -DSVCD_VERSION='"$(VERSION)"' \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS    := -lev -lhttp_parser -lwslay $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread

ifeq ($(SAN),1)
B         := build-asan
CFLAGS    += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS   += -fsanitize=address,undefined
else
B         := build
endif

COMMON_SRC := $(wildcard common/*.c)
SVCD_SRC   := $(COMMON_SRC) $(wildcard master/*.c worker/*.c coordinator/*.c store/*.c)
SVC_SRC    := $(COMMON_SRC) $(wildcard cli/*.c)
UNIT_SRC   := $(wildcard test/unit/test_*.c)

SVCD_OBJ   := $(SVCD_SRC:%.c=$(B)/obj/%.o)
SVC_OBJ    := $(SVC_SRC:%.c=$(B)/obj/%.o)
UNIT_BIN   := $(UNIT_SRC:test/unit/%.c=$(B)/unit/%)

PREFIX    ?= /usr
DESTDIR   ?=

.PHONY: all asan run test unit integration deps clean install format format-check bench deb fuzz

all: $(B)/svcd $(B)/svc

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC $(B)/$<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/svcd: $(SVCD_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/svc: $(SVC_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests link the pure common/ modules (never a main()) with cmocka.
$(B)/unit/%: test/unit/%.c $(filter-out $(B)/obj/common/main%.o,$(COMMON_SRC:%.c=$(B)/obj/%.o))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -MMD -MP -MF $@.d -o $@ $< $(filter %.o,$^) $(LDLIBS) -lcmocka

asan:
	$(MAKE) SAN=1 all

deps:
	bash scripts/deps.sh

run: deps all
	./build/svcd -c etc/svcd.yaml

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: all
	SVCD_BUILD=$(B) build/venv/bin/python -m pytest -q test/integration $(PYTEST_ARGS)

# The whole suite: unit + integration on the normal build, then on the ASan+UBSan build.
test:
	bash scripts/deps.sh --test
	$(MAKE) format-check
	$(MAKE) all unit
	$(MAKE) fuzz FUZZ_SECONDS=15 FUZZ_RUNS=2000000
	bash test/store/run.sh
	$(MAKE) integration
	$(MAKE) SAN=1 all unit
	SAN=1 bash test/store/run.sh
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:log_path=$(CURDIR)/build-asan/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(CURDIR)/build-asan/ubsan \
	  $(MAKE) SAN=1 integration

# The binaries and the manual pages (install-man, from packaging/packaging.mk).
install: all install-man
	install -D -m 0755 build/svcd $(DESTDIR)$(PREFIX)/sbin/svcd
	install -D -m 0755 build/svc $(DESTDIR)$(PREFIX)/bin/svc

format:
	clang-format -i $(wildcard */*.c */*.h test/*/*.c)

format-check:
	clang-format --dry-run -Werror $(wildcard */*.c */*.h test/*/*.c)

clean:
	rm -rf build build-asan

-include $(SVCD_OBJ:.o=.d) $(SVC_OBJ:.o=.d) $(UNIT_BIN:=.d)
include packaging/packaging.mk
include test/fuzz/fuzz.mk
include test/fuzz/fuzz_common.mk

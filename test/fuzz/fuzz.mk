# test/fuzz/fuzz.mk — libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined).
#
#   make -f test/fuzz/fuzz.mk fuzz            build every target, run each for FUZZ_SECONDS
#   make -f test/fuzz/fuzz.mk build/fuzz/fuzz_sio
#
# Included by the top-level Makefile's `fuzz` target (or run directly as above).
# Corpora live in build/fuzz/corpus/<target>; seeds in test/fuzz/seeds/<target>.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-omit-frame-pointer $(shell pkg-config --cflags jansson 2>/dev/null)
FUZZ_LIBS    := $(shell pkg-config --libs jansson 2>/dev/null)

build/fuzz/fuzz_sio: test/fuzz/fuzz_sio.c common/sio_packet.c common/buf.c common/sio_packet.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ test/fuzz/fuzz_sio.c common/sio_packet.c common/buf.c $(FUZZ_LIBS)

FUZZ_TARGETS += build/fuzz/fuzz_sio

.PHONY: fuzz-sio
fuzz-sio: build/fuzz/fuzz_sio
	@mkdir -p build/fuzz/corpus/fuzz_sio
	build/fuzz/fuzz_sio -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  build/fuzz/corpus/fuzz_sio $(wildcard test/fuzz/seeds/fuzz_sio)

fuzz: fuzz-sio

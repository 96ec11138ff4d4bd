# test/fuzz/fuzz_common.mk — libFuzzer targets for the configuration loader and the
# JWT verifier (bearer tokens and their JSON). Same conventions (and fuzz_run) as
# fuzz.mk, which is included first.
FUZZ_COMMON_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
                      -fno-omit-frame-pointer
FUZZ_COMMON_LIBS   := $(shell pkg-config --libs yaml-0.1 openssl jansson 2>/dev/null)

build/fuzz/fuzz_config: test/fuzz/fuzz_config.c common/config.c common/units.c common/buf.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_COMMON_CFLAGS) -o $@ $^ $(FUZZ_COMMON_LIBS)

build/fuzz/fuzz_jwt: test/fuzz/fuzz_jwt.c common/jwt.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_COMMON_CFLAGS) -o $@ $^ $(FUZZ_COMMON_LIBS)

FUZZ_TARGETS += build/fuzz/fuzz_config build/fuzz/fuzz_jwt

.PHONY: fuzz-config fuzz-jwt
fuzz-config: build/fuzz/fuzz_config
	$(call fuzz_run,fuzz_config,4096,etc)

fuzz-jwt: build/fuzz/fuzz_jwt
	$(call fuzz_run,fuzz_jwt,2048)

fuzz: fuzz-config fuzz-jwt

# test/fuzz/fuzz.mk — libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined).
#
#   make fuzz                                  build every target, run each for FUZZ_SECONDS
#   make fuzz FUZZ_SECONDS=15 FUZZ_RUNS=200000 the bounded smoke run `make test` does
#   make build/fuzz/fuzz_http && build/fuzz/fuzz_http build/fuzz/corpus/fuzz_http
#
# Included by the top-level Makefile (fuzz_common.mk holds config and JWT).
# Corpora grow in build/fuzz/corpus/<target>; seeds in test/fuzz/seeds/<target>
# are read, never written. A crash leaves build/fuzz/crash-* and fails the make.
#
#   fuzz_sio          Socket.IO / Engine.IO packets (common/sio_packet.c)
#   fuzz_http         worker/http_conn.c + response.c + router.c on a socketpair
#   fuzz_json_body    booking bodies (common/booking_input.c)
#   fuzz_chat_fields  chat frame fields, the binary-attachment field and the
#                     coordinator's chat_coord_frame() on a real loop
#   fuzz_ws           the WebSocket input path of worker/ws.c (wslay glue, UTF-8,
#                     message limit, close handshake) on a socketpair
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_RUNS    ?= -1
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-omit-frame-pointer -DSVCD_VERSION='"$(VERSION)"' \
                $(shell pkg-config --cflags jansson libmongoc-1.0 2>/dev/null)
FUZZ_LIBS    := $(shell pkg-config --libs jansson 2>/dev/null)
# run one target: $(call fuzz_run,name,max_len,extra seed dirs); the log goes to
# build/fuzz/<name>.log, its tail is shown (all of a failure's report).
fuzz_run = @mkdir -p build/fuzz/corpus/$(1) && echo "== fuzz $(1) ($(FUZZ_SECONDS)s)" && \
  cd build/fuzz && ./$(1) -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) -max_len=$(2) \
  -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 corpus/$(1) \
  $(addprefix $(CURDIR)/,$(wildcard test/fuzz/seeds/$(1)) $(3)) >$(1).log 2>&1 || \
  { grep -v '^\#[0-9]' $(1).log | tail -80; exit 1; }; grep -E '^(Done|stat::number_of_executed_units)' $(1).log

FUZZ_HTTP_SRC := test/fuzz/fuzz_http.c worker/http_conn.c worker/response.c worker/router.c \
                 worker/http_request.c worker/admin.c common/admin_check.c common/buf.c \
                 common/log.c common/scoreboard.c
FUZZ_CHAT_SRC := test/fuzz/fuzz_chat_fields.c coordinator/chat_coord.c coordinator/chat_map.c \
                 coordinator/chat_proto.c coordinator/chat_queue.c coordinator/cluster_bus.c \
                 common/ipc.c common/buf.c common/log.c common/config.c common/units.c \
                 common/scoreboard.c

build/fuzz/fuzz_sio: test/fuzz/fuzz_sio.c common/sio_packet.c common/buf.c common/sio_packet.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ test/fuzz/fuzz_sio.c common/sio_packet.c common/buf.c $(FUZZ_LIBS)

# resp_serialize_head is wrapped: the harness records every response http_conn queues.
build/fuzz/fuzz_http: $(FUZZ_HTTP_SRC) $(wildcard worker/*.h common/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_HTTP_SRC) -Wl,--wrap=resp_serialize_head \
	  -lev -lhttp_parser $(shell pkg-config --libs openssl 2>/dev/null)

build/fuzz/fuzz_json_body: test/fuzz/fuzz_json_body.c common/booking_input.c common/booking_input.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ test/fuzz/fuzz_json_body.c common/booking_input.c $(FUZZ_LIBS)

build/fuzz/fuzz_ws: test/fuzz/fuzz_ws.c worker/ws.c worker/ws.h worker/http_request.c common/buf.c common/log.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ test/fuzz/fuzz_ws.c worker/ws.c worker/http_request.c \
	  common/buf.c common/log.c -lev -lwslay $(shell pkg-config --libs openssl 2>/dev/null)

build/fuzz/fuzz_chat_fields: $(FUZZ_CHAT_SRC) $(wildcard coordinator/*.h common/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_CHAT_SRC) -lev \
	  $(shell pkg-config --libs jansson libmongoc-1.0 yaml-0.1 openssl 2>/dev/null)

FUZZ_TARGETS += build/fuzz/fuzz_sio build/fuzz/fuzz_http build/fuzz/fuzz_json_body \
                build/fuzz/fuzz_chat_fields build/fuzz/fuzz_ws

.PHONY: fuzz-build fuzz-sio fuzz-http fuzz-json-body fuzz-chat-fields fuzz-ws
fuzz-build: $(FUZZ_TARGETS)

fuzz-sio: build/fuzz/fuzz_sio
	$(call fuzz_run,fuzz_sio,4096)

fuzz-http: build/fuzz/fuzz_http
	$(call fuzz_run,fuzz_http,4096)

fuzz-json-body: build/fuzz/fuzz_json_body
	$(call fuzz_run,fuzz_json_body,8192)

fuzz-chat-fields: build/fuzz/fuzz_chat_fields
	$(call fuzz_run,fuzz_chat_fields,8192)

fuzz-ws: build/fuzz/fuzz_ws
	$(call fuzz_run,fuzz_ws,4096)

fuzz: fuzz-sio fuzz-http fuzz-json-body fuzz-chat-fields fuzz-ws

# ngx_http_flashsale_module — build and test entry points.
#
#   make            build build/ngx_http_flashsale_module.so (no package installs)
#   make deps       install missing Debian packages (scripts/deps.sh)
#   make test       deps + build + prove -r t/   (PROVE_ARGS="-v t/10-foo.t" to narrow)
#   make demo       deps + build + scripts/demo.sh start
#   make demo-stop  scripts/demo.sh stop
#   make bench      deps + build + bench/bench.pl: hot paths against their
#                   baselines, table in bench/results/ (see bench/README.md)
#   make clean      remove build/
#
#   make test SANITIZE=address   the suite with the module built with ASan+UBSan
#                   (any sanitizer report fails the test file that caused it)
#   make valgrind   the suite under valgrind memcheck, nginx in single-process
#                   mode (VALGRIND_TESTS="t/20-*.t t/37*.t" for a subset)
#   make fuzz       libFuzzer harnesses in fuzz/, FUZZ_SECONDS (60) each
#   make fuzz-regress   replay fuzz/corpus/ and fuzz/regressions/ once
#   make test-asan-nginx  the suite on an nginx built with ASan+UBSan and
#                   NGX_DEBUG_PALLOC (pool overflows show), from make fuzz's tree
#
# SANITIZE=address make build   builds with AddressSanitizer (see scripts/build.sh).

SHELL      := /bin/bash
PROVE      ?= prove
PROVE_ARGS ?=

.PHONY: all deps build test demo demo-stop bench clean valgrind fuzz fuzz-regress test-asan-nginx

all: build

deps:
	scripts/deps.sh

build:
	scripts/build.sh

test: deps build
	$(PROVE) -r $(if $(strip $(PROVE_ARGS)),$(PROVE_ARGS),t/)

demo: deps build
	scripts/demo.sh start

demo-stop:
	scripts/demo.sh stop

# not part of `make test`: about 4 minutes, and it needs the machine to itself
bench: deps build
	perl bench/bench.pl $(BENCH_ARGS)

VALGRIND_TESTS ?= t/
FUZZ_SECONDS   ?= 60

valgrind: deps build
	scripts/deps.sh --valgrind
	FLASHSALE_VALGRIND=1 $(PROVE) -r $(VALGRIND_TESTS)

fuzz:
	scripts/deps.sh --fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh run

fuzz-regress:
	scripts/deps.sh --fuzz
	scripts/fuzz.sh regress

test-asan-nginx: deps
	scripts/deps.sh --fuzz
	scripts/fuzz.sh build
	FLASHSALE_ASAN_NGINX=1 $(PROVE) -r $(if $(strip $(PROVE_ARGS)),$(PROVE_ARGS),t/)

clean:
	rm -rf build

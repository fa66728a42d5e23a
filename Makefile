# ngx_http_flashsale_module — build and test entry points.
#
#   make            build build/ngx_http_flashsale_module.so (no package installs)
#   make deps       install missing Debian packages (scripts/deps.sh)
#   make test       deps + build + prove -r t/   (PROVE_ARGS="-v t/10-foo.t" to narrow)
#   make demo       deps + build + scripts/demo.sh start
#   make demo-stop  scripts/demo.sh stop
#   make clean      remove build/
#
# SANITIZE=address make build   builds with AddressSanitizer (see scripts/build.sh).

SHELL      := /bin/bash
PROVE      ?= prove
PROVE_ARGS ?=

.PHONY: all deps build test demo demo-stop clean

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

clean:
	rm -rf build

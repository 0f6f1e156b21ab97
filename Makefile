# mopt — make smaller, faster neural networks from ONNX models.
#
# `make help` lists the targets. Configurations build into separate object directories:
#   build/release (default), build/san (SAN=1: ASan + UBSan), each with or without CUDA
#   (CUDA=1 forces it on, CUDA=0 off; default: on when nvcc is found and libopt/exec/cuda has
#   .cu sources).
# CI=true (as CI sets it) or WERROR=1 adds -Werror.

.DEFAULT_GOAL := all
SHELL := /bin/bash

PREFIX ?= /usr/local
CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
NVCC ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
VENV ?= .venv
PY := $(VENV)/bin/python
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.1.0)

ifeq ($(SAN),1)
CONFIG := san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPTFLAGS := -O1 -g
else
CONFIG := release
SANFLAGS :=
OPTFLAGS := -O2 -g
endif

# The CUDA backend is built when nvcc exists and there is CUDA code to build; without a .cu file
# there is nothing to compile, and linking libcudart would only add a run-time dependency.
ifeq ($(CUDA),)
CUDA := $(if $(and $(NVCC),$(wildcard libopt/exec/cuda/*.cu)),1,0)
endif
ifeq ($(CUDA),1)
CONFIG := $(CONFIG)-cuda
endif

ifneq ($(filter true 1,$(CI) $(WERROR)),)
ERRFLAGS := -Werror
endif

B := build/$(CONFIG)
GEN := build/gen
WARN := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes
CPPFLAGS += -I. -I$(GEN) -Ilibopt/ir -DMOPT_VERSION='"$(VERSION)"'
CPPFLAGS += $(shell pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
CFLAGS ?= $(OPTFLAGS)
CFLAGS += -std=gnu11 -fPIC -pthread $(WARN) $(ERRFLAGS) $(SANFLAGS) -MMD -MP
LDLIBS += -lprotobuf-c -lcsv -lz -lm -pthread
# OpenBLAS is opened at its first use (libopt/exec/cpu/blas.c), not linked: most commands never
# call it and linking it costs every process ~3-4 ms at start.
LDLIBS += -ldl
LDFLAGS += $(SANFLAGS)

ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CPPFLAGS += -DOPT_HAVE_CUDA=1 -I$(CUDA_HOME)/include
LDLIBS += -L$(CUDA_HOME)/lib64 -lcudart -lcublas
NVCCFLAGS ?= -O2 -Xcompiler -fPIC -I. -Ilibopt/ir -I$(GEN) -std=c++17
CU_SRC := $(wildcard libopt/exec/cuda/*.cu)
else
CU_SRC :=
endif

LIB_SRC := $(wildcard libopt/ir/*.c libopt/passes/*.c libopt/exec/*.c libopt/exec/cpu/*.c \
                      libopt/exec/cuda/*.c formats/*.c calib/*.c)
TOOL_SRC := $(wildcard tools/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)
FUZZ_SRC := $(wildcard tests/fuzz/*.c)

LIB_OBJ := $(B)/gen/onnx.pb-c.o $(LIB_SRC:%.c=$(B)/%.o) $(CU_SRC:%.cu=$(B)/%.cu.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(B)/%.o)
UNIT_OBJ := $(UNIT_SRC:%.c=$(B)/%.o)

MOPT := $(B)/bin/mopt
UNIT := $(B)/bin/unit-tests

.PHONY: all help deps venv demo test unit cli roundtrip conformance oracle bench fuzz install \
        clean distclean models lint

## all: build bin/mopt, lib/libopt.a, lib/libopt.so and lib/pkgconfig/libopt.pc (default)
# With SAN=1 everything stays in build/san: bin/ and lib/ always hold the release build, which
# benchmarks and other users of bin/mopt expect.
ifeq ($(SAN),1)
all: $(MOPT) $(B)/libopt.a
else
all: bin/mopt lib/libopt.a lib/libopt.so lib/pkgconfig/libopt.pc
endif

help: ## list the targets
	@grep -E '^## ' Makefile | sed 's/^## /  make /'

$(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h: $(ONNX_PROTO)
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -I$(dir $(ONNX_PROTO)) $(ONNX_PROTO)

$(B)/gen/onnx.pb-c.o: $(GEN)/onnx.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(filter-out $(WARN) $(ERRFLAGS),$(CFLAGS)) -w -c $< -o $@

$(B)/%.o: %.c | $(GEN)/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(B)/%.cu.o: %.cu | $(GEN)/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -DOPT_HAVE_CUDA=1 -c $< -o $@

$(B)/libopt.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(MOPT): $(TOOL_OBJ) $(B)/libopt.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(TOOL_OBJ) $(B)/libopt.a $(LDLIBS) -o $@

# Copy then rename: replacing the file in place fails ("Text file busy") while it runs.
bin/mopt: $(MOPT)
	@mkdir -p bin
	cp $< $@.tmp && mv -f $@.tmp $@

lib/libopt.a: $(B)/libopt.a
	@mkdir -p lib
	cp $< $@

lib/libopt.so: $(LIB_OBJ)
	@mkdir -p lib
	$(CC) -shared $(LDFLAGS) $^ $(LDLIBS) -o $@

lib/pkgconfig/libopt.pc: Makefile
	@mkdir -p lib/pkgconfig
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include/mopt\n\nName: libopt\nDescription: mopt model optimisation library\nVersion: %s\nLibs: -L$${libdir} -lopt\nLibs.private: %s\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' '$(VERSION)' '$(LDLIBS)' > $@

## deps: install missing Debian packages and the Python venv for oracle tests (idempotent)
DEB_PKGS := libprotobuf-c-dev protobuf-c-compiler libonnx-dev zlib1g-dev libopenblas-dev libcsv-dev \
            libcriterion-dev libonnx-testdata dataset-fashion-mnist clang python3-venv valgrind pkg-config
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing $$missing"; \
	  SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@$(MAKE) --no-print-directory venv

venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

## models: generate ResNet-50, MobileNetV2 and the BERT-like encoder into build/models
models: build/models/.stamp
build/models/.stamp: datasets/make_zoo.py | venv
	@mkdir -p build/models
	$(PY) datasets/make_zoo.py build/models
	touch $@

## demo: the Deep Compression table on the bundled Fashion-MNIST models
demo: deps all
	MOPT=bin/mopt bash tests/demo.sh

unit: $(UNIT)
$(UNIT): $(UNIT_OBJ) $(B)/libopt.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(UNIT_OBJ) $(B)/libopt.a -lcriterion $(LDLIBS) -o $@

## test: everything CI runs (SAN=1 for ASan+UBSan); ends with Criterion's summary
test: deps
	$(if $(filter 1,$(SAN)),,$(MAKE) --no-print-directory all)
	$(MAKE) --no-print-directory $(MOPT) $(UNIT)
	MOPT=$(MOPT) bash tests/cli/run.sh
	MOPT=$(MOPT) PY=$(PY) bash tests/roundtrip.sh
	$(MAKE) --no-print-directory conformance
	$(MAKE) --no-print-directory oracle
	cd tests && MOPT=../$(MOPT) ../$(UNIT) --jobs 2

## conformance: ONNX backend node tests for every registered op
CONF := $(B)/bin/conformance
$(CONF): $(B)/tests/conformance/conformance.o $(B)/libopt.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(B)/libopt.a $(LDLIBS) -o $@
conformance: $(MOPT) $(CONF)
	@if [ -f tests/conformance/run.sh ]; then MOPT=$(MOPT) CONF=$(CONF) PY=$(PY) bash tests/conformance/run.sh; \
	 else echo "conformance: no executor yet"; fi

## oracle: compare mopt's executor with ONNX Runtime
oracle: $(MOPT) | venv
	@if [ -f tests/oracle/run.sh ]; then MOPT=$(MOPT) PY=$(PY) bash tests/oracle/run.sh; \
	 else echo "oracle: no executor yet"; fi

## bench: benchmarks against ONNX Runtime (results in docs/benchmarks.md)
bench: deps all models
	MOPT=bin/mopt PY=$(PY) bash bench/run.sh

## fuzz: libFuzzer harnesses, FUZZ_SECONDS each (default 60)
FUZZ_SECONDS ?= 60
fuzz: deps $(GEN)/onnx.pb-c.h
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

## install: install mopt, libopt (with headers and pkg-config file) and man pages under PREFIX
PUBLIC_HEADERS := $(wildcard libopt/ir/*.h libopt/exec/exec.h libopt/passes/*.h formats/*.h calib/*.h)
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 bin/mopt $(DESTDIR)$(PREFIX)/bin/mopt
	install -m 644 lib/libopt.a lib/libopt.so $(DESTDIR)$(PREFIX)/lib/
	for h in $(PUBLIC_HEADERS); do install -D -m 644 $$h $(DESTDIR)$(PREFIX)/include/mopt/$$h; done
	sed 's|^prefix=.*|prefix=$(PREFIX)|' lib/pkgconfig/libopt.pc > $(DESTDIR)$(PREFIX)/lib/pkgconfig/libopt.pc
	install -m 644 docs/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/

clean:
	rm -rf build bin lib tests/out

distclean: clean
	rm -rf $(VENV)

-include $(shell find $(B) -name '*.d' 2>/dev/null)

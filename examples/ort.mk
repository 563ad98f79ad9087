# The ONNX Runtime toolchain of the C and C++ examples (included by examples/c/Makefile and
# examples/cpp/Makefile).
#
# By default everything goes into examples/.ort/ (git-ignored), and nothing is fetched from
# anywhere but the system's own Debian mirror:
#   - the headers: Debian trixie's libonnxruntime-dev (ONNX Runtime 1.21 headers), fetched with
#     apt-get using a source list and state folders of its own (the system's apt lists are neither
#     read nor changed) from the mirror named by the first URIs: line of $(APT_SOURCES), and
#     unpacked with dpkg -x;
#   - the library: the one of the onnxruntime wheel pinned in the project's venv
#     (onnxruntime/capi/libonnxruntime.so.X.Y.Z), linked through a libonnxruntime.so.1 symlink
#     (its SONAME, which the wheel does not provide) and found at run time through the rpath.
# The C API only grows, so the 1.21 headers work with the newer library: the programs ask for the
# API version of their headers.
#
# A system-wide ONNX Runtime instead: make ORT_HOME=/usr (or /opt/onnxruntime-linux-x64-1.xx), or
# give ORT_INCLUDE (the folder holding onnxruntime_c_api.h) and ORT_LIB (the folder holding
# libonnxruntime.so) yourself.

ORT_MK_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
REPO ?= $(abspath $(ORT_MK_DIR)/..)
PYTHON ?= $(REPO)/.venv/bin/python
ORT_DIR ?= $(ORT_MK_DIR)/.ort

# The Debian mirror: the system's own (no host name is written in this repository).
APT_SOURCES ?= /etc/apt/sources.list.d/debian.sources
APT_KEYRING ?= /usr/share/keyrings/debian-archive-keyring.gpg
DEBIAN_SUITE ?= trixie
ORT_DEB_PACKAGE ?= libonnxruntime-dev

ifdef ORT_HOME
ORT_INCLUDE ?= $(firstword $(wildcard $(ORT_HOME)/include/onnxruntime/onnxruntime_c_api.h \
                                        $(ORT_HOME)/include/onnxruntime_c_api.h))
ORT_LIB ?= $(firstword $(wildcard $(ORT_HOME)/lib/$(shell $(CC) -print-multiarch 2>/dev/null)/libonnxruntime.so \
                                    $(ORT_HOME)/lib/libonnxruntime.so $(ORT_HOME)/lib64/libonnxruntime.so))
ifeq ($(ORT_INCLUDE),)
$(error ORT_HOME=$(ORT_HOME): no onnxruntime_c_api.h under $(ORT_HOME)/include)
endif
ifeq ($(ORT_LIB),)
$(error ORT_HOME=$(ORT_HOME): no libonnxruntime.so under $(ORT_HOME)/lib)
endif
override ORT_INCLUDE := $(patsubst %/,%,$(dir $(ORT_INCLUDE)))
override ORT_LIB := $(patsubst %/,%,$(dir $(ORT_LIB)))
endif

ifeq ($(ORT_INCLUDE)$(ORT_LIB),)
# The default: fetched into $(ORT_DIR).
ORT_INCLUDE := $(ORT_DIR)/include/onnxruntime
ORT_LIB := $(ORT_DIR)/lib
ORT_DEPS := $(ORT_DIR)/include/.stamp $(ORT_DIR)/lib/libonnxruntime.so.1
else ifeq ($(ORT_INCLUDE),)
$(error give ORT_INCLUDE with ORT_LIB (or ORT_HOME))
else ifeq ($(ORT_LIB),)
$(error give ORT_LIB with ORT_INCLUDE (or ORT_HOME))
else
ORT_DEPS :=
endif

ORT_CPPFLAGS := -isystem $(ORT_INCLUDE)
ORT_LDFLAGS := -L$(ORT_LIB) -Wl,-rpath,$(ORT_LIB)
ORT_LDLIBS := -lonnxruntime

APT_DIR := $(ORT_DIR)/apt
# apt-get with a source list, lists and cache of its own; as the invoking user (no sandbox user).
APT_GET = apt-get -q -o Dir::Etc::SourceList=$(APT_DIR)/sources.list -o Dir::Etc::SourceParts=/dev/null \
	-o Dir::State::Lists=$(APT_DIR)/lists -o Dir::Cache=$(APT_DIR)/cache \
	-o Dir::State::status=/dev/null -o Acquire::Languages=none \
	-o APT::Sandbox::User=$$(id -un)

$(APT_DIR)/sources.list:
	@mkdir -p $(APT_DIR)/lists/partial $(APT_DIR)/cache/archives/partial
	@uri=$$(awk '/^URIs:/ { print $$2; exit }' $(APT_SOURCES) 2>/dev/null); \
	if [ -z "$$uri" ]; then \
	  echo "error: no URIs: line in $(APT_SOURCES); give APT_SOURCES=FILE (deb822), or ORT_HOME / ORT_INCLUDE and ORT_LIB" >&2; \
	  exit 2; \
	fi; \
	echo "deb [signed-by=$(APT_KEYRING)] $$uri $(DEBIAN_SUITE) main" > $@.tmp && mv $@.tmp $@

$(ORT_DIR)/include/.stamp: $(APT_DIR)/sources.list
	@echo "fetching $(ORT_DEB_PACKAGE) ($(DEBIAN_SUITE)) into $(ORT_DIR)"
	$(APT_GET) update >/dev/null
	rm -f $(APT_DIR)/$(ORT_DEB_PACKAGE)_*.deb
	cd $(APT_DIR) && $(APT_GET) download $(ORT_DEB_PACKAGE)
	rm -rf $(ORT_DIR)/deb $(ORT_DIR)/include
	dpkg -x $(APT_DIR)/$(ORT_DEB_PACKAGE)_*.deb $(ORT_DIR)/deb
	test -f $(ORT_DIR)/deb/usr/include/onnxruntime/onnxruntime_c_api.h
	mkdir -p $(ORT_DIR)/include
	ln -sfn ../deb/usr/include/onnxruntime $(ORT_DIR)/include/onnxruntime
	touch $@

# The wheel's library, found without importing onnxruntime (importlib only locates it).
ORT_WHEEL_LIB = $(PYTHON) -c 'import glob, importlib.util as u, os, sys; \
	s = u.find_spec("onnxruntime"); \
	libs = glob.glob(os.path.join(s.submodule_search_locations[0], "capi", "libonnxruntime.so.1.*")) if s else []; \
	sys.exit("no onnxruntime wheel in " + sys.executable) if len(libs) != 1 else print(libs[0])'

$(ORT_DIR)/lib/libonnxruntime.so.1:
	@test -x $(PYTHON) || { echo "error: no Python at $(PYTHON): create the project's venv, or give PYTHON=..., or ORT_HOME=..." >&2; exit 2; }
	@mkdir -p $(@D)
	@lib=$$($(ORT_WHEEL_LIB)) && \
	ln -sfn "$$lib" $@ && ln -sfn libonnxruntime.so.1 $(@D)/libonnxruntime.so && \
	echo "linking $$lib as $@"

.PHONY: toolchain distclean-toolchain
toolchain: $(ORT_DEPS)

# Removes what was fetched (shared by examples/c and examples/cpp).
distclean-toolchain:
	rm -rf $(ORT_DIR)

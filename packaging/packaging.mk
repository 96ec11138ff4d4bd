# packaging.mk — Debian package and manual pages.
#
# Included from the top-level Makefile (`include packaging/packaging.mk`), and
# also usable on its own (`make -f packaging/packaging.mk deb`), which is how
# debian/rules calls `install-man` inside the package build. The guard keeps a
# double inclusion harmless.
#
#   make deb          build build/svcd_<version>_<arch>.deb with dpkg-buildpackage
#   make install-man  install man/*.{1,5,8} under $(DESTDIR)$(PREFIX)/share/man
#   make man-lint     `mandoc -Tlint` must print nothing for any page
#
# dpkg-buildpackage wants a debian/ directory at the top of the source tree, and
# the repository keeps it under packaging/ so that no debian/ lives at its top
# level. `deb` therefore stages a copy of the tree in build/deb/svcd-<version>/,
# copies packaging/debian/ to debian/ there, adds the service, init script,
# logrotate and default files under the names debhelper looks for, and builds
# there; only the finished .deb is copied to build/.

ifndef SVCD_PACKAGING_MK
SVCD_PACKAGING_MK := 1

PKG_VERSION := $(shell dpkg-parsechangelog -l packaging/debian/changelog -S Version 2>/dev/null)
PKG_ARCH    := $(shell dpkg --print-architecture 2>/dev/null)
PKG_DEB     := build/svcd_$(PKG_VERSION)_$(PKG_ARCH).deb
PKG_STAGE   := build/deb/svcd-$(PKG_VERSION)
MAN_PAGES   := man/svcd.8 man/svc.1 man/svcd.yaml.5
PREFIX      ?= /usr
DESTDIR     ?=

# Everything that ends up in the package: a change to any of them rebuilds it.
# PKG_SRC_DIRS must name every directory the Makefile compiles sources from
# (test_packaging.py checks it against the Makefile's SVCD_SRC and SVC_SRC).
PKG_SRC_DIRS := common master worker coordinator store cli
PKG_INPUTS := Makefile $(wildcard $(addsuffix /*.[ch],$(PKG_SRC_DIRS)) \
              packaging/debian/* packaging/debian/source/* \
              packaging/svcd.* packaging/packaging.mk) $(MAN_PAGES)

.PHONY: deb install-man man-lint

deb: $(PKG_DEB)

$(PKG_DEB): $(PKG_INPUTS)
	rm -rf build/deb
	mkdir -p $(PKG_STAGE)
	tar -cf - --exclude=./build --exclude=./build-asan --exclude=./.git \
	    --exclude=node_modules --exclude=./var --exclude=__pycache__ --exclude=.pytest_cache . \
	  | tar -xf - -C $(PKG_STAGE)
	cp -a packaging/debian $(PKG_STAGE)/debian
	cp packaging/svcd.service $(PKG_STAGE)/debian/svcd.service
	cp packaging/svcd.init $(PKG_STAGE)/debian/svcd.init
	cp packaging/svcd.logrotate $(PKG_STAGE)/debian/svcd.logrotate
	cp packaging/svcd.default $(PKG_STAGE)/debian/svcd.default
	# A release build whatever the caller's make variables (e.g. `make SAN=1 test`
	# runs this from its ASan pass): drop inherited MAKEFLAGS and SAN.
	cd $(PKG_STAGE) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u SAN dpkg-buildpackage -us -uc -b
	cp build/deb/svcd_$(PKG_VERSION)_$(PKG_ARCH).deb $@
	@echo "deb: $@"

install-man: $(MAN_PAGES)
	install -D -m 0644 man/svcd.8 $(DESTDIR)$(PREFIX)/share/man/man8/svcd.8
	install -D -m 0644 man/svc.1 $(DESTDIR)$(PREFIX)/share/man/man1/svc.1
	install -D -m 0644 man/svcd.yaml.5 $(DESTDIR)$(PREFIX)/share/man/man5/svcd.yaml.5

# `mandoc -Tlint -W all` (STYLE level included) must find nothing. Two kinds of
# line are not about the pages and are dropped: mandoc resolves .Xr only
# against the installed manuals (/usr/share/man), so before the package is
# installed the three pages' references to each other are "not found"; and
# without a mandoc.db it notes "outdated mandoc.db" for every reference it
# does find on disk. test/integration/test_packaging.py lints the installed
# pages with a fresh mandoc.db, where mandoc prints nothing at all.
MAN_XREFS := Xr svc 1|Xr svcd 8|Xr svcd.yaml 5
man-lint: $(MAN_PAGES)
	@out=$$(mandoc -Tlint -W all $(MAN_PAGES) 2>&1 \
	  | grep -v -E 'STYLE: referenced manual not found: ($(MAN_XREFS))( \([0-9]+ times\))?$$' \
	  | grep -v -E '^mandoc: outdated mandoc.db lacks [^ ]+ entry, run makewhatis'); \
	if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; echo "man-lint: clean"

endif

# pgsluice — build, lint, test and demo on Debian 12.
# `make test` is what CI runs (.ci/run): it installs what is missing first.

CARGO ?= cargo
TEST_THREADS ?= 2

.PHONY: all deps build lint fmt test demo clean

all: build

## deps: install missing system packages (PostgreSQL 15, psql, pgbench, …) and rustfmt/clippy
deps:
	./scripts/install-deps.sh

## build: compile everything, tests included
build:
	$(CARGO) build --all-targets

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

## fmt: format the code
fmt:
	$(CARGO) fmt --all

## test: deps, lint, man and unit checks, every unit and integration test, then the
##       package (build + lintian) and its end-to-end test in a booted container
test:
	$(MAKE) deps
	$(MAKE) lint
	$(MAKE) man-check units-check
	$(CARGO) test --all-targets -- --test-threads=$(TEST_THREADS)
	$(MAKE) deb
	$(MAKE) e2e

## demo: a throwaway PostgreSQL, pgsluice in front of it, pgbench through it
##       (make demo DEMO_ARGS=--keep leaves both running)
demo:
	$(MAKE) deps
	$(CARGO) build --release
	./scripts/demo.sh $(DEMO_ARGS)

clean:
	$(CARGO) clean

## bench: pgsluice against PgBouncer (Debian's 1.18) and direct PostgreSQL 15 in the
##        same run, about 10 minutes; writes benches/results/<date>-<host>.md and .png
.PHONY: bench bench-quick
bench:
	$(MAKE) deps
	CARGO=$(CARGO) python3 benches/bench.py $(BENCH_ARGS)

## bench-quick: the same in about 1.5 minutes (fewer client counts, one repetition, short
##              runs); writes under benches/results/quick/ (git-ignored)
bench-quick:
	$(MAKE) deps
	CARGO=$(CARGO) python3 benches/bench.py --quick $(BENCH_ARGS)

## units-check: systemd-analyze verify of systemd/pgsluice.{socket,service} must print nothing
## man-check:   man --warnings and groff -ww on man/ must print nothing; pgsluice.ini.5 up to date
.PHONY: units-check man-check deb e2e
units-check:
	./tests/packaging.sh units

man-check:
	./tests/packaging.sh man

## deb: the Debian package in target/debian/ (cargo-deb, installed if missing),
##      then lintian on it (no errors allowed; warnings are printed)
deb:
	$(MAKE) deps
	command -v cargo-deb >/dev/null 2>&1 || $(CARGO) install cargo-deb --locked
	$(CARGO) deb --strip
	./tests/packaging.sh deb

## e2e: the package in a booted Debian 12 container (systemd-nspawn): install, socket
##      activation, reload, D-Bus policy, watchdog, stop, purge (tests/e2e/run.sh)
e2e:
	$(MAKE) deps
	./tests/e2e/run.sh $(E2E_ARGS)

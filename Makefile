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

## test: deps, lint, then every unit and integration test (in this order, also under -j)
test:
	$(MAKE) deps
	$(MAKE) lint
	$(CARGO) test --all-targets -- --test-threads=$(TEST_THREADS)

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

## bench-quick: the same in about a minute (fewer client counts, one repetition, short
##              runs); writes under benches/results/quick/ (git-ignored)
bench-quick:
	$(MAKE) deps
	CARGO=$(CARGO) python3 benches/bench.py --quick $(BENCH_ARGS)

# Entry points for working on geoledger locally. The work is done by the scripts in
# infra/local, which can also be run on their own; every port can be moved with the
# variables listed in .env.example.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The places `make up` loads, relative to the repository root unless absolute.
PLACES ?= ../shared/data/places-sample.csv
export PLACES

.PHONY: help install up down restart clean status test faults bench bench-rebuild loadtest bench-api lint fmt

help:
	@printf '%s\n' \
	  'make up       install what is missing, build, start the stack, load $$(PLACES) once' \
	  'make down     stop everything make up started (data is kept)' \
	  'make restart  down, then up' \
	  'make clean    down, then delete the stack'"'"'s and the tests'"'"' data in .local' \
	  'make status   what runs where, and whether it is healthy' \
	  'make test     fmt and clippy checks, then cargo test against fresh test servers' \
	  'make faults   kill and restart each server under writes; prove no accepted write is lost (minutes)' \
	  'make bench    time GET /points at 1k and 1M points on a throwaway PostgreSQL (minutes)' \
	  'make bench-rebuild  time projector rebuild on 1M events against a plain COPY (minutes)' \
	  'make loadtest Locust users on a step ramp against the running stack, with a plot (minutes)' \
	  'make bench-api  requests/s at 256 connections and end-to-end write latency, stack running' \
	  'make lint     the fmt and clippy checks alone (and shellcheck, when installed)' \
	  'make fmt      format the Rust code' \
	  'make install  install the pinned outside programs only'

install:
	@infra/local/install.sh

up:
	@infra/local/up.sh

down:
	@infra/local/services.sh stop all

restart: down up

status:
	@infra/local/services.sh status

# The virtualenv holding nats-server is a tool, not data, and survives a clean.
clean: down
	@infra/local/test-services.sh stop
	rm -rf .local/data .local/log .local/run .local/state .local/test .local/bench .local/bench-rebuild .local/loadtests

test:
	@infra/local/test.sh

# A stack of its own on free ports, broken four ways under writes and reads; fails if an
# accepted write is lost or doubled. FAULTS_ARGS goes to the driver, e.g. '--writers 12'.
FAULTS_ARGS ?=
faults:
	@GEOLEDGER_FAULTS_ARGS='$(FAULTS_ARGS)' loadtests/faults.sh

# Prints figures, asserts nothing; BENCH_ARGS goes to bench-reads, e.g. BENCH_ARGS='--repeat 50'.
BENCH_ARGS ?=
bench:
	@loadtests/bench-reads.sh $(BENCH_ARGS)

# Prints figures, asserts nothing; BENCH_ARGS goes to bench-rebuild, e.g. BENCH_ARGS='--events 100000'.
bench-rebuild:
	@loadtests/bench-rebuild.sh $(BENCH_ARGS)

# Against the running stack (make up); see loadtests/README.md. LOCUST_USER is one of
# GuideUser, ReadHeavyUser, WriteHeavyUser, SpatialUser; BENCH_API_ARGS may be --drain.
LOCUST_USER ?= GuideUser
loadtest:
	@loadtests/locust/run.sh $(LOCUST_USER)

BENCH_API_ARGS ?=
bench-api:
	@loadtests/bench-api.sh $(BENCH_API_ARGS)

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	@if command -v shellcheck >/dev/null; then \
	  shellcheck -x infra/local/*.sh loadtests/*.sh loadtests/locust/*.sh .ci/run && echo 'shellcheck: ok'; \
	else echo 'shellcheck not installed; shell scripts not checked'; fi

fmt:
	cargo fmt --all

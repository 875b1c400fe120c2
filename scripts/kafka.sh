#!/usr/bin/env bash
# The Kafka-protocol broker for weir's tests, CI and local runs: tansu 0.4.9 (crates.io), on
# 127.0.0.1, in memory, one node.
#
#   scripts/kafka.sh install   build tansu once into the cache (no-op if it is there)
#   scripts/kafka.sh start     install if needed, start a fresh, empty broker, wait until it listens
#   scripts/kafka.sh stop      stop it (TERM, then KILL after 5 s)
#   scripts/kafka.sh status    "running"/"not running" and the address; exit status 0/1
#   scripts/kafka.sh restart   stop + start (a clean broker: storage is in memory)
#
# Why tansu: it is the one Kafka-protocol broker that can be had here from a package registry
# alone (no docker, no JVM download). It speaks the transactional protocol that weir's exactly-once
# sink uses (idempotent + transactional producer, send_offsets_to_transaction, read_committed
# fetches that stop at the last stable offset) and does not create topics on produce: clients
# create them with the admin API (weir's `ensure_topic` does).
#
# Install: `cargo install tansu --version 0.4.9 --locked`, built with opt-level 1 and no debug
# info (19.5 min measured on 2 cores; the default opt-level 3 took ~56 min), into
#   $WEIR_CACHE_DIR (default ~/.cache/weir)/tansu-0.4.9/bin/tansu
# using $CACHE/tansu-build as the cargo target folder, which is deleted after a successful install
# (it holds ~2.5 GB). CI runs the same command, so a warm cache is reused everywhere.
#
# Start: tansu runs from an empty run folder, $CACHE/run, recreated at every start (tansu loads
# the first `.env` file found in its working folder or above, so the run folder gets an empty
# one, and tansu's own environment variables are unset), with
#   tansu broker --listener-url tcp://127.0.0.1:PORT --advertised-listener-url tcp://127.0.0.1:PORT
#                --storage-engine memory://tansu/
# Its log is $CACHE/run/tansu.log (RUST_LOG, default "warn", sets its verbosity), its pid
# $CACHE/run/tansu.pid. Every start is an empty broker: nothing survives a stop. tansu has no
# node-id flag (one node, id 111) and its cluster id defaults to tansu_cluster. Expect ERROR
# lines that are not failures: "Broken pipe" each time a client closes its connection while a
# metadata answer is on its way, and ProducerFenced for a zombie's EndTxn (see below).
#
# Known gaps of tansu 0.4.9 against a real Kafka (tests/kafka_conformance.rs checks the rest:
# committed records visible, open ones hidden behind the last stable offset, offsets sent with
# send_offsets_to_transaction committed with the transaction and only with it):
#   * a read_committed consumer still sees the records of ABORTED transactions; weir's output
#     records carry `weir-epoch` / `weir-attempt` headers so `weir verify
#     --broker-filters-aborted=false` resolves the committed output itself;
#   * a zombie producer is not fenced: when a second producer with the same transactional.id has
#     called init_transactions, the first one's commit times out instead of failing with
#     PRODUCER_FENCED (tansu detects the fencing but drops the EndTxn request instead of answering
#     it, and librdkafka retries until its timeout);
#   * committed offsets come back WITHOUT their metadata: OffsetFetch answers an empty string
#     (the offsets themselves are right).
#
# Environment:
#   WEIR_KAFKA=HOST:PORT   use an existing (real) Kafka instead: `start` only checks that it
#                          accepts connections, and every test and command talks to it.
#   WEIR_KAFKA_FULL_TXN=1  the broker is a real Kafka: the tests of the gaps above run too.
#   WEIR_KAFKA_PORT        port of the local broker (default 9092), always on 127.0.0.1.
#   WEIR_CACHE_DIR         cache folder (default ~/.cache/weir).
set -euo pipefail

TANSU_VERSION=0.4.9
CACHE="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
ROOT="$CACHE/tansu-$TANSU_VERSION"
BIN="$ROOT/bin/tansu"
BUILD_DIR="$CACHE/tansu-build"
RUN_DIR="$CACHE/run"
PID_FILE="$RUN_DIR/tansu.pid"
LOG_FILE="$RUN_DIR/tansu.log"
PORT="${WEIR_KAFKA_PORT:-9092}"
ADDR="127.0.0.1:$PORT"

say() { echo "kafka.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# Whether HOST:PORT accepts a TCP connection (within 2 s).
accepts() {
  local host="${1%:*}" port="${1##*:}"
  timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid="$(cat "$PID_FILE" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

cmd_install() {
  if [ -x "$BIN" ]; then
    say "tansu $TANSU_VERSION is installed: $BIN"
    return 0
  fi
  command -v cargo >/dev/null || die "cargo is needed to build tansu"
  mkdir -p "$CACHE"
  say "building tansu $TANSU_VERSION from crates.io into $ROOT (15 to 20 min on 2 cores, once)"
  local t0=$SECONDS
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_TARGET_DIR="$BUILD_DIR" \
    cargo install tansu --version "$TANSU_VERSION" --locked --root "$ROOT"
  [ -x "$BIN" ] || die "cargo install finished but $BIN is missing"
  local s=$((SECONDS - t0))
  say "tansu $TANSU_VERSION installed in $((s / 60)) min $((s % 60)) s"
  rm -rf "$BUILD_DIR"
}

cmd_start() {
  if [ -n "${WEIR_KAFKA:-}" ]; then
    accepts "$WEIR_KAFKA" || die "WEIR_KAFKA=$WEIR_KAFKA does not accept connections"
    say "WEIR_KAFKA=$WEIR_KAFKA accepts connections; nothing to start"
    return 0
  fi
  local pid
  if pid="$(running_pid)"; then
    say "tansu is already running (pid $pid) on $ADDR"
    return 0
  fi
  if accepts "$ADDR"; then
    die "$ADDR is already in use by another process (not a broker started by this script); \
stop it, set WEIR_KAFKA=$ADDR to use it, or pick another WEIR_KAFKA_PORT"
  fi
  cmd_install
  rm -rf "$RUN_DIR"
  mkdir -p "$RUN_DIR"
  # tansu loads the first `.env` found in its working folder or any folder above it; an empty one
  # here stops that search, and its own settings are unset, so nothing from outside leaks in.
  echo "# empty on purpose: stops tansu from reading a .env of a parent folder" >"$RUN_DIR/.env"
  local t0=$SECONDS
  (
    cd "$RUN_DIR"
    unset CLUSTER_ID LISTENER_URL ADVERTISED_LISTENER_URL STORAGE_ENGINE SCHEMA_REGISTRY \
      OTEL_EXPORTER_OTLP_ENDPOINT DATA_LAKE ICEBERG_CATALOG
    RUST_LOG="${RUST_LOG:-warn}" NO_COLOR=1 exec setsid nohup "$BIN" broker \
      --listener-url "tcp://$ADDR" \
      --advertised-listener-url "tcp://$ADDR" \
      --storage-engine memory://tansu/ \
      </dev/null >"$LOG_FILE" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + 30))
  until accepts "$ADDR"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "tansu exited at start; the end of $LOG_FILE:"
      tail -n 30 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "tansu does not listen on $ADDR after 30 s; the end of $LOG_FILE:"
      tail -n 30 "$LOG_FILE" >&2 || true
      cmd_stop
      exit 1
    fi
    sleep 0.2
  done
  say "tansu $TANSU_VERSION is running (pid $pid) on $ADDR, ready in $((SECONDS - t0)) s; log: $LOG_FILE"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    say "tansu is not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "tansu (pid $pid) did not stop after TERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  say "tansu (pid $pid) stopped"
}

cmd_status() {
  local pid
  if [ -n "${WEIR_KAFKA:-}" ]; then
    if accepts "$WEIR_KAFKA"; then
      echo "running: WEIR_KAFKA=$WEIR_KAFKA accepts connections"
      return 0
    fi
    echo "not running: WEIR_KAFKA=$WEIR_KAFKA does not accept connections"
    return 1
  fi
  if pid="$(running_pid)"; then
    echo "running: tansu $TANSU_VERSION (pid $pid) on $ADDR; log: $LOG_FILE"
    return 0
  fi
  echo "not running: no tansu started by this script on $ADDR"
  return 1
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart)
    cmd_stop
    cmd_start
    ;;
  *)
    echo "usage: $0 install|start|stop|status|restart" >&2
    exit 2
    ;;
esac

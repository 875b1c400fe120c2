#!/usr/bin/env bash
# The Kafka-protocol broker for weir's tests, CI and local runs: tansu 0.4.9 (crates.io), on
# 127.0.0.1, in memory, one node.
#
#   scripts/kafka.sh install   build tansu once into the cache (no-op if it is there)
#   scripts/kafka.sh start     install if needed, start a fresh, empty broker, wait until it listens
#   scripts/kafka.sh stop      stop it (TERM, then KILL after 5 s)
#   scripts/kafka.sh status    "running"/"not running" and the address; exit status 0/1
#   scripts/kafka.sh restart   stop + start: a clean broker in memory; with WEIR_KAFKA_STORAGE=s3
#                              the same broker again, its topics, offsets and transactions kept
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
# $CACHE/run/tansu.pid (run-PORT instead of run for another port). Every start is an empty
# broker: nothing survives a stop.
#
# Storage that survives a restart: tansu keeps everything (records, watermarks, groups,
# transactions) in an object store, and its only durable stores are S3 and PostgreSQL, neither
# of which can be had here. With WEIR_KAFKA_STORAGE=s3, `start` also runs scripts/s3store.py, a
# small S3-compatible store over the folder $RUN_DIR/s3 on 127.0.0.1:PORT+1, and starts tansu
# with `--storage-engine s3://tansu/` pointed at it; `restart` then stops and starts tansu alone,
# and the broker comes back with its data (tests/kafka_broker_restart.rs restarts one mid-run).
# `start` still begins empty, and `stop` stops both. tansu has no
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
#   WEIR_KAFKA_STORAGE     memory (default) or s3: see "Storage that survives a restart".
#   WEIR_CACHE_DIR         cache folder (default ~/.cache/weir).
set -euo pipefail

TANSU_VERSION=0.4.9
CACHE="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
ROOT="$CACHE/tansu-$TANSU_VERSION"
BIN="$ROOT/bin/tansu"
BUILD_DIR="$CACHE/tansu-build"
PORT="${WEIR_KAFKA_PORT:-9092}"
ADDR="127.0.0.1:$PORT"
if [ "$PORT" = 9092 ]; then RUN_DIR="$CACHE/run"; else RUN_DIR="$CACHE/run-$PORT"; fi
PID_FILE="$RUN_DIR/tansu.pid"
LOG_FILE="$RUN_DIR/tansu.log"
STORAGE="${WEIR_KAFKA_STORAGE:-memory}"
STORE_ADDR="127.0.0.1:$((PORT + 1))"
STORE_PID_FILE="$RUN_DIR/s3store.pid"
STORE_LOG_FILE="$RUN_DIR/s3store.log"
case "$STORAGE" in
  memory | s3) ;;
  *) echo "kafka.sh: WEIR_KAFKA_STORAGE=$STORAGE: memory or s3" >&2 && exit 2 ;;
esac

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

# The pid in pid file $1 if that process runs.
running_pid() {
  local file="${1:-$PID_FILE}" pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# Stops the process of pid file $1 (named $2): TERM, then KILL after 5 s.
stop_pid() {
  local file="$1" name="$2" pid i
  if ! pid="$(running_pid "$file")"; then
    rm -f "$file"
    say "$name is not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) did not stop after TERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  say "$name (pid $pid) stopped"
}

# Waits until $1 (HOST:PORT) accepts connections from process $2 (named $3, logging to $4).
await_listen() {
  local addr="$1" pid="$2" name="$3" log="$4" deadline=$((SECONDS + 30))
  until accepts "$addr"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "$name exited at start; the end of $log:"
      tail -n 30 "$log" >&2 || true
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "$name does not listen on $addr after 30 s; the end of $log:"
      tail -n 30 "$log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

# Starts the S3-compatible store of WEIR_KAFKA_STORAGE=s3 over $RUN_DIR/s3.
start_store() {
  local pid
  if accepts "$STORE_ADDR"; then
    die "$STORE_ADDR (the object store of WEIR_KAFKA_STORAGE=s3) is already in use"
  fi
  command -v python3 >/dev/null || die "WEIR_KAFKA_STORAGE=s3 needs python3"
  setsid nohup python3 "$(dirname "$0")/s3store.py" --root "$RUN_DIR/s3" --port "$((PORT + 1))" \
    </dev/null >"$STORE_LOG_FILE" 2>&1 &
  pid=$!
  echo "$pid" >"$STORE_PID_FILE"
  await_listen "$STORE_ADDR" "$pid" "s3store.py" "$STORE_LOG_FILE" || {
    stop_pid "$STORE_PID_FILE" "s3store.py"
    exit 1
  }
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
  stop_pid "$STORE_PID_FILE" "s3store.py" 2>/dev/null
  rm -rf "$RUN_DIR"
  mkdir -p "$RUN_DIR"
  # tansu loads the first `.env` found in its working folder or any folder above it; an empty one
  # here stops that search, and its own settings are unset, so nothing from outside leaks in.
  echo "# empty on purpose: stops tansu from reading a .env of a parent folder" >"$RUN_DIR/.env"
  [ "$STORAGE" = s3 ] && start_store
  start_broker
}

# Starts tansu on the storage of $STORAGE (the run folder and, for s3, the store exist).
start_broker() {
  local pid storage=memory://tansu/ t0=$SECONDS
  [ "$STORAGE" = s3 ] && storage=s3://tansu/
  (
    cd "$RUN_DIR"
    unset CLUSTER_ID LISTENER_URL ADVERTISED_LISTENER_URL STORAGE_ENGINE SCHEMA_REGISTRY \
      OTEL_EXPORTER_OTLP_ENDPOINT DATA_LAKE ICEBERG_CATALOG
    export AWS_ENDPOINT="http://$STORE_ADDR" AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=weir \
      AWS_SECRET_ACCESS_KEY=weir AWS_DEFAULT_REGION=us-east-1
    RUST_LOG="${RUST_LOG:-warn}" NO_COLOR=1 exec setsid nohup "$BIN" broker \
      --listener-url "tcp://$ADDR" \
      --advertised-listener-url "tcp://$ADDR" \
      --storage-engine "$storage" \
      </dev/null >>"$LOG_FILE" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PID_FILE"
  await_listen "$ADDR" "$pid" tansu "$LOG_FILE" || {
    stop_pid "$PID_FILE" tansu
    exit 1
  }
  say "tansu $TANSU_VERSION is running (pid $pid) on $ADDR with $STORAGE storage, ready in \
$((SECONDS - t0)) s; log: $LOG_FILE"
}

cmd_stop() {
  stop_pid "$PID_FILE" tansu
  if [ -f "$STORE_PID_FILE" ]; then stop_pid "$STORE_PID_FILE" "s3store.py"; fi
}

# s3 storage: the same broker again on the data it had. memory: a fresh broker.
cmd_restart() {
  if [ -n "${WEIR_KAFKA:-}" ] || [ "$STORAGE" = memory ]; then
    cmd_stop
    cmd_start
    return
  fi
  running_pid "$STORE_PID_FILE" >/dev/null || die "no s3 store runs for $ADDR: use start"
  stop_pid "$PID_FILE" tansu
  start_broker
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
    echo "running: tansu $TANSU_VERSION (pid $pid) on $ADDR, $STORAGE storage; log: $LOG_FILE"
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
  restart) cmd_restart ;;
  *)
    echo "usage: $0 install|start|stop|status|restart" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# The Kafka broker for weir's tests, CI, benchmarks and local runs: Apache Kafka 4.4.0 from its
# jars on Maven Central, one combined broker + controller (KRaft) on 127.0.0.1.
#
#   scripts/kafka.sh install   fetch the broker's jars once into the cache (no-op if there)
#   scripts/kafka.sh start     install if needed, format fresh storage (a new cluster id), start
#                              the broker, return when it answers metadata requests
#   scripts/kafka.sh stop      stop it (TERM: a controlled shutdown; KILL after 30 s)
#   scripts/kafka.sh restart   stop, then start the same broker again on its log dirs: topics,
#                              records, committed offsets and transactions are kept
#   scripts/kafka.sh status    "running"/"not running", the address and pid; exit status 0/1
#
# Install: `mvn dependency:copy-dependencies` over scripts/kafka/pom.xml (org.apache.kafka:
# kafka_2.13 and its runtime dependencies, ~45 MB) into $CACHE/kafka-$KAFKA_VERSION/libs. Maven
# keeps its own copy in ~/.m2, so a second install on the same machine downloads nothing.
#
# Start: the run folder $CACHE/run (run-PORT for another port) is made anew: server.properties,
# log4j2.properties, the log dirs (data/, formatted by kafka.tools.StorageTool with a fresh
# cluster id), the broker's log (broker.log, stdout.log) and pid (broker.pid). The broker listens
# on 127.0.0.1:PORT, its controller on 127.0.0.1:PORT+1. Then scripts/kafka/Ready.java (run by
# `java` from source, with the broker's jars) waits until the broker lists its cluster and topics.
#
# Settings for one node (the rest are Kafka's defaults, as in production):
#   replication factor and min ISR 1 for the internal topics (offsets, transactions, share
#   groups); group.initial.rebalance.delay.ms=0 (no 3 s wait for a group's first member);
#   4 partitions for __consumer_offsets and __transaction_state (50 would be created for nothing);
#   auto.create.topics.enable=false (weir creates its topics with the admin API, as it must on
#   brokers that do not create them); transaction.abort.timed.out.transaction.cleanup.interval.ms
#   =1000 (a transaction past its transaction.timeout.ms is aborted within a second, not ten:
#   the paused-producer test waits for it); a JVM heap of at most 512 MiB.
#
# Environment:
#   WEIR_KAFKA=HOST:PORT   use an existing Kafka (or Redpanda) instead: `start` only checks that
#                          it accepts connections, and every test and command talks to it.
#   WEIR_KAFKA_PORT        port of the local broker (default 9092), always on 127.0.0.1; the
#                          controller takes the next port.
#   WEIR_CACHE_DIR         cache folder (default ~/.cache/weir).
#   KAFKA_HEAP_OPTS        JVM heap flags (default -Xms256m -Xmx512m).
set -euo pipefail

KAFKA_VERSION=4.4.0
SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
CACHE="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
PORT="${WEIR_KAFKA_PORT:-9092}"
CONTROLLER_PORT=$((PORT + 1))
ADDR="127.0.0.1:$PORT"
if [ "$PORT" = 9092 ]; then RUN_DIR="$CACHE/run"; else RUN_DIR="$CACHE/run-$PORT"; fi
PID_FILE="$RUN_DIR/broker.pid"
LOG_FILE="$RUN_DIR/broker.log"
OUT_FILE="$RUN_DIR/stdout.log"

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

# The broker's pid if it runs.
running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid="$(cat "$PID_FILE" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

cmd_install() {
  if [ -f "$LIBS/.complete" ]; then
    say "Apache Kafka $KAFKA_VERSION is installed: $LIBS"
    return 0
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the broker's jars"
  command -v java >/dev/null || die "Java 17 or newer is needed to run the broker"
  say "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIBS"
  local t0=$SECONDS
  rm -rf "$LIBS"
  mkdir -p "$LIBS"
  mkdir -p "$CACHE"
  mvn -B -q -f "$SCRIPTS/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS" >"$CACHE/mvn.log" 2>&1 || {
    cat "$CACHE/mvn.log" >&2
    die "mvn could not fetch the broker's jars (its output is above and in $CACHE/mvn.log)"
  }
  [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] || die "mvn finished but the broker jar is missing"
  touch "$LIBS/.complete"
  say "Apache Kafka $KAFKA_VERSION installed in $((SECONDS - t0)) s"
}

# The broker's configuration, for the run folder.
write_config() {
  cat >"$RUN_DIR/server.properties" <<EOF
# Written by scripts/kafka.sh: one combined broker + controller (KRaft) on 127.0.0.1.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$RUN_DIR/data
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
EOF
  cat >"$RUN_DIR/log4j2.properties" <<EOF
# Written by scripts/kafka.sh: the broker logs INFO and above to broker.log.
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $LOG_FILE
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

# java with the broker's jars and logging set up, from the run folder.
kafka_java() {
  java -Dlog4j2.configurationFile="$RUN_DIR/log4j2.properties" -cp "$LIBS/*" "$@"
}

cmd_start() {
  if [ -n "${WEIR_KAFKA:-}" ]; then
    accepts "$WEIR_KAFKA" || die "WEIR_KAFKA=$WEIR_KAFKA does not accept connections"
    say "WEIR_KAFKA=$WEIR_KAFKA accepts connections; nothing to start"
    return 0
  fi
  local pid
  if pid="$(running_pid)"; then
    say "Apache Kafka is already running (pid $pid) on $ADDR"
    return 0
  fi
  for a in "$ADDR" "127.0.0.1:$CONTROLLER_PORT"; do
    if accepts "$a"; then
      die "$a is already in use by another process (not a broker started by this script); \
stop it, set WEIR_KAFKA=$ADDR to use a broker that runs there, or pick another WEIR_KAFKA_PORT"
    fi
  done
  cmd_install
  rm -rf "$RUN_DIR"
  mkdir -p "$RUN_DIR/data"
  write_config
  # A cluster id is 16 random bytes in URL-safe base64 without padding (22 characters).
  local cluster_id t0=$SECONDS
  cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$RUN_DIR/server.properties" \
    >"$RUN_DIR/format.log" 2>&1 || {
    cat "$RUN_DIR/format.log" >&2
    die "formatting the broker's storage failed"
  }
  launch
  say "Apache Kafka $KAFKA_VERSION is running (pid $(running_pid)) on $ADDR, cluster $cluster_id, \
ready in $((SECONDS - t0)) s; log: $LOG_FILE"
}

# Starts the broker on the formatted log dirs of the run folder and waits until it answers.
launch() {
  local pid
  (
    cd "$RUN_DIR"
    # shellcheck disable=SC2086 # the heap options are several words
    exec setsid nohup java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -XX:+UseG1GC \
      -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$RUN_DIR/log4j2.properties" -cp "$LIBS/*" \
      kafka.Kafka "$RUN_DIR/server.properties" </dev/null >>"$OUT_FILE" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PID_FILE"
  if ! java -cp "$LIBS/*" "$SCRIPTS/kafka/Ready.java" "$ADDR" 60 2>>"$OUT_FILE"; then
    say "the broker does not answer on $ADDR after 60 s; the end of $LOG_FILE:"
    tail -n 30 "$LOG_FILE" >&2 || true
    tail -n 5 "$OUT_FILE" >&2 || true
    cmd_stop
    exit 1
  fi
}

cmd_stop() {
  local pid i
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    say "no broker started by this script runs on $ADDR"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "the broker (pid $pid) did not stop within 30 s of TERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  say "Apache Kafka (pid $pid) stopped"
}

# The same broker again, on the log dirs it had (also after it was killed).
cmd_restart() {
  if [ -n "${WEIR_KAFKA:-}" ]; then
    die "WEIR_KAFKA=$WEIR_KAFKA is not a broker this script started: it cannot restart it"
  fi
  [ -f "$RUN_DIR/data/meta.properties" ] || die "no broker storage in $RUN_DIR/data: use start"
  cmd_stop
  local t0=$SECONDS
  launch
  say "Apache Kafka $KAFKA_VERSION is running again (pid $(running_pid)) on $ADDR with its data, \
ready in $((SECONDS - t0)) s"
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
    echo "running: Apache Kafka $KAFKA_VERSION (pid $pid) on $ADDR; log: $LOG_FILE"
    return 0
  fi
  echo "not running: no broker started by this script on $ADDR"
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

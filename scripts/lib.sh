# Shared by scripts/run and scripts/test: install the tools the project needs when
# they are missing, and run a local Kafka-compatible broker (nisshi) on loopback.
# Source it; it defines functions only.

NISSHI_VERSION=0.8.1
BUF_VERSION=1.75.0
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { printf '==> %s\n' "$*" >&2; }

ensure_nisshi() {
  if nisshi --version >/dev/null 2>&1; then return; fi
  log "installing the nisshi broker $NISSHI_VERSION (a one-time build of about 12 minutes on 2 cores)"
  # nisshi declares a newer rustc than it needs; the stable toolchain builds it.
  cargo install "nisshi@$NISSHI_VERSION" --locked --ignore-rust-version
}

ensure_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then return; fi
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
}

ensure_buf() {
  BUF="$PWD/.tools/node_modules/.bin/buf"
  if [ -x "$BUF" ] && [ "$("$BUF" --version 2>/dev/null)" = "$BUF_VERSION" ]; then return; fi
  if ! command -v npm >/dev/null 2>&1; then
    log "installing npm (for buf, the protobuf linter)"
    apt-get update -qq && apt-get install -y -qq npm >/dev/null
  fi
  log "installing buf $BUF_VERSION"
  npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error "@bufbuild/buf@$BUF_VERSION" >/dev/null
}

# Prints a loopback TCP port nothing listens on, preferring $1 when given.
free_port() {
  local port
  # Below Linux's ephemeral range (32768 and up), where outgoing connections take
  # ports that a connect probe cannot see.
  for port in ${1:-} $(shuf -i 20000-32767 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "no free loopback port found" >&2
  return 1
}

# Starts nisshi on 127.0.0.1 (port $1, or a free one) with in-memory storage,
# trying other ports if the chosen one turns out to be taken. Sets BROKER_PORT and
# BROKER_PID; the broker is stopped when the shell exits.
start_broker() {
  local attempt
  for attempt in 1 2 3 4 5; do
    if start_broker_once "${1:-}"; then return; fi
    set -- ""
    log "retrying the broker on another port"
  done
  return 1
}

start_broker_once() {
  BROKER_PORT=$(free_port "${1:-}")
  local url="tcp://127.0.0.1:$BROKER_PORT" log_file="${BROKER_LOG:-target/nisshi.log}"
  mkdir -p "$(dirname "$log_file")"
  # A short initial rebalance delay makes group joins quick; Kafka's default is 3 s.
  nisshi broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine memory://nisshi/ --group-initial-rebalance-delay 100ms \
    >"$log_file" 2>&1 &
  BROKER_PID=$!
  trap 'stop_broker' EXIT
  local i
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; then
      log "nisshi broker listening on 127.0.0.1:$BROKER_PORT (log: $log_file)"
      return
    fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      log "the broker exited at start:"; tail -20 "$log_file" >&2; return 1
    fi
    sleep 0.1
  done
  log "the broker did not listen within 30 s:"; tail -20 "$log_file" >&2
  return 1
}

stop_broker() {
  if [ -n "${BROKER_PID:-}" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
}

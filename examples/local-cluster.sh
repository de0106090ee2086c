#!/usr/bin/env bash
# Starts a local 3-node everynode cluster on loopback (process runtime), or stops it.
#   examples/local-cluster.sh         start (builds the binary first)
#   examples/local-cluster.sh stop    stop every agent it started
set -euo pipefail

N=${N:-3}
BASE_DIR=${BASE_DIR:-${TMPDIR:-/tmp}/everynode-local}
GOSSIP_BASE=${GOSSIP_BASE:-17946}
API_BASE=${API_BASE:-18946}
cd "$(dirname "$0")/.."

stop() {
  if [[ -f "$BASE_DIR/pids" ]]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$BASE_DIR/pids"
    rm -f "$BASE_DIR/pids"
    echo "stopped the local cluster (data kept in $BASE_DIR)"
  else
    echo "no local cluster is running from $BASE_DIR"
  fi
}

if [[ "${1:-start}" == "stop" ]]; then stop; exit 0; fi
if [[ -f "$BASE_DIR/pids" ]]; then
  echo "a local cluster already runs from $BASE_DIR; stop it with: $0 stop" >&2
  exit 1
fi

cargo build --release --quiet
BIN=target/release/everynode
mkdir -p "$BASE_DIR"
SEED="127.0.0.1:$GOSSIP_BASE"
# One secret for the whole cluster: gossip and node-to-node calls are sealed with keys derived from it.
SECRET="$BASE_DIR/cluster-secret"
if [[ ! -s "$SECRET" ]]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$SECRET")
fi
for i in $(seq 0 $((N - 1))); do
  "$BIN" agent --node-id "node-$i" --data-dir "$BASE_DIR/node-$i" --runtime process \
    --gossip-addr "127.0.0.1:$((GOSSIP_BASE + i))" --api-addr "127.0.0.1:$((API_BASE + i))" \
    --seed "$SEED" --cluster-secret-file "$SECRET" --label "example.com/slot=$i" >"$BASE_DIR/node-$i.log" 2>&1 &
  echo $! >> "$BASE_DIR/pids"
  echo "started node-$i: gossip 127.0.0.1:$((GOSSIP_BASE + i)), API http://127.0.0.1:$((API_BASE + i)), log $BASE_DIR/node-$i.log"
done

export EVERYNODE_SERVER="http://127.0.0.1:$API_BASE"
# Admin commands read the API token from a node's data dir.
export EVERYNODE_DATA_DIR="$BASE_DIR/node-0"
printf 'waiting for %s members and a leader' "$N"
for _ in $(seq 1 150); do
  alive=$("$BIN" members -o json 2>/dev/null | grep -c '"state": "alive"' || true)
  leader=$("$BIN" members -o json 2>/dev/null | grep -c '"role": "leader"' || true)
  if [[ "$alive" == "$N" && "$leader" == 1 ]]; then break; fi
  printf '.'; sleep 0.2
done
echo
"$BIN" members
echo
"$BIN" cluster
cat <<EOT

Talk to it:   export EVERYNODE_SERVER=$EVERYNODE_SERVER EVERYNODE_DATA_DIR=$EVERYNODE_DATA_DIR
              $BIN apply -f examples/hello.yaml
              $BIN get ds; $BIN describe ds hello
Stop it:      $0 stop
EOT

#!/bin/sh
# One-shot set-up of the compose stack's OpenBao, run by the `openbao-init` service at every
# `docker compose up` (in the openbao image: the bao CLI and busybox, as root so it can write
# the volumes). Every step can run again:
#   1. wait for the server to listen;
#   2. initialise it the first time (one key share), keeping the unseal key and the root token
#      in $BAO_INIT_DIR/init.json (the `openbao-unseal` volume, owner-only);
#   3. unseal it: a restarted server always comes up sealed;
#   4. enable transit at $TRANSIT_MOUNT and write the `aimc` policy (transit keys named
#      $KEY_PREFIX-*);
#   5. make sure aimc has a periodic token with that policy (aimc does not renew its token:
#      each run renews it for another $TOKEN_PERIOD, and creates a new one when it is gone),
#      and write it for aimc as $AIMC_TOKEN_DIR/vault.toml (`vault_token = "..."`,
#      readable by uid $AIMC_UID only), which the replicas read through AIMC_CONFIG_FILE.
# The unseal key and the tokens go through files and stdin, never a command line.
set -eu

BAO_ADDR=${BAO_ADDR:-http://openbao:8200}
export BAO_ADDR
BAO_INIT_DIR=${BAO_INIT_DIR:-/openbao/init}
AIMC_TOKEN_DIR=${AIMC_TOKEN_DIR:-/aimc-vault}
AIMC_UID=${AIMC_UID:-10001}
TRANSIT_MOUNT=${AIMC_VAULT_TRANSIT_MOUNT:-transit}
KEY_PREFIX=${AIMC_VAULT_KEY_PREFIX:-aimc}
TOKEN_PERIOD=${AIMC_VAULT_TOKEN_PERIOD:-8760h}
WAIT_SECONDS=${BAO_WAIT_SECONDS:-60}

INIT_FILE=$BAO_INIT_DIR/init.json
ACCESSOR_FILE=$BAO_INIT_DIR/aimc-token-accessor
TOKEN_FILE=$AIMC_TOKEN_DIR/vault.toml

log() { printf 'openbao-init: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# The value of "field": "value" in bao's JSON output (one field per line).
json_field() {
  sed -n "s/^ *\"$1\": *\"\([^\"]*\)\".*/\1/p" "$2" | head -n 1
}

umask 077
mkdir -p "$BAO_INIT_DIR" "$AIMC_TOKEN_DIR"

# 1. `bao status` exits 0 when unsealed, 2 when sealed or not initialised, 1 when unreachable.
waited=0
while :; do
  status=0
  bao status >/dev/null 2>&1 || status=$?
  [ "$status" -ne 1 ] && break
  waited=$((waited + 1))
  [ "$waited" -lt "$WAIT_SECONDS" ] || die "OpenBao at $BAO_ADDR did not answer within $WAIT_SECONDS s"
  sleep 1
done

# 2. `bao operator init -status` exits 0 when initialised, 2 when not.
initialised=0
bao operator init -status >/dev/null 2>&1 || initialised=$?
case $initialised in
0)
  [ -s "$INIT_FILE" ] || die "OpenBao is initialised but $INIT_FILE is missing: its unseal key is lost. Remove the openbao-data and openbao-unseal volumes to start over (every stored key is lost with them)."
  ;;
2)
  log "initialising OpenBao (1 key share)"
  bao operator init -key-shares=1 -key-threshold=1 -format=json >"$INIT_FILE.tmp"
  mv "$INIT_FILE.tmp" "$INIT_FILE"
  ;;
*) die "cannot read OpenBao's initialisation status at $BAO_ADDR" ;;
esac

unseal_key=$(sed -n '/"unseal_keys_b64"/,/\]/s/^ *"\([^"]*\)",\{0,1\}$/\1/p' "$INIT_FILE" | head -n 1)
BAO_TOKEN=$(json_field root_token "$INIT_FILE")
[ -n "$unseal_key" ] && [ -n "$BAO_TOKEN" ] || die "$INIT_FILE holds no unseal key or root token"
export BAO_TOKEN

# 3. Unseal through the API with the key on stdin (`bao operator unseal` wants a terminal).
if [ "$status" -ne 0 ]; then
  log "unsealing OpenBao"
  printf '{"key":"%s"}' "$unseal_key" | bao write -format=json sys/unseal - >/dev/null
fi
unseal_key=""
waited=0
until bao status >/dev/null 2>&1 && bao token lookup >/dev/null 2>&1; do
  waited=$((waited + 1))
  [ "$waited" -lt "$WAIT_SECONDS" ] || die "OpenBao did not become active within $WAIT_SECONDS s of unsealing"
  sleep 1
done

# 4. Transit and the policy.
if bao secrets list -format=json | grep -q "\"$TRANSIT_MOUNT/\""; then
  log "transit is enabled at $TRANSIT_MOUNT/"
else
  log "enabling transit at $TRANSIT_MOUNT/"
  bao secrets enable -path="$TRANSIT_MOUNT" transit >/dev/null
fi

bao policy write aimc - >/dev/null <<POLICY
# aimc creates and reads its workspaces' keys, encrypts, decrypts and rewraps with them,
# rotates them and raises their min_decryption_version; it never deletes or exports a key.
path "$TRANSIT_MOUNT/keys/$KEY_PREFIX-*" {
  capabilities = ["create", "read", "update"]
}
path "$TRANSIT_MOUNT/encrypt/$KEY_PREFIX-*" {
  capabilities = ["update"]
}
path "$TRANSIT_MOUNT/decrypt/$KEY_PREFIX-*" {
  capabilities = ["update"]
}
path "$TRANSIT_MOUNT/rewrap/$KEY_PREFIX-*" {
  capabilities = ["update"]
}
POLICY
log "wrote the aimc policy (transit keys $TRANSIT_MOUNT/keys/$KEY_PREFIX-*)"

# 5. aimc's token, known here by its accessor only.
accessor=""
[ -s "$ACCESSOR_FILE" ] && accessor=$(cat "$ACCESSOR_FILE")
if [ -n "$accessor" ] && [ -s "$TOKEN_FILE" ] &&
  bao token lookup -accessor "$accessor" >/dev/null 2>&1; then
  bao write auth/token/renew-accessor accessor="$accessor" >/dev/null
  log "renewed aimc's token (accessor $accessor) for $TOKEN_PERIOD"
else
  created=$BAO_INIT_DIR/aimc-token.json
  bao token create -orphan -policy=aimc -period="$TOKEN_PERIOD" \
    -display-name=aimc -format=json >"$created"
  token=$(json_field client_token "$created")
  accessor=$(json_field accessor "$created")
  rm -f "$created"
  [ -n "$token" ] && [ -n "$accessor" ] || die "bao token create gave no token"
  printf 'vault_token = "%s"\n' "$token" >"$TOKEN_FILE.tmp"
  token=""
  chown "$AIMC_UID:$AIMC_UID" "$TOKEN_FILE.tmp"
  chmod 0400 "$TOKEN_FILE.tmp"
  mv "$TOKEN_FILE.tmp" "$TOKEN_FILE"
  printf '%s\n' "$accessor" >"$ACCESSOR_FILE"
  log "created aimc's token (accessor $accessor, period $TOKEN_PERIOD) in $TOKEN_FILE"
fi
log "OpenBao is unsealed and ready for aimc"

# OpenBao for deploy/compose: one server node, keeping its data in the `openbao-data` volume
# (integrated storage, "raft"; OpenBao has no plain file backend). It starts sealed:
# openbao-init.sh initialises it once and unseals it at every `docker compose up`.
ui = false

storage "raft" {
  path    = "/openbao/file"
  node_id = "openbao-1"
}

listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  # Plain HTTP inside the compose network only: the port is not published. Put TLS here
  # (tls_cert_file, tls_key_file) before exposing it anywhere else.
  tls_disable = true
}

api_addr     = "http://openbao:8200"
cluster_addr = "http://openbao:8201"

# aimc does not renew its token: the periodic token openbao-init.sh creates lasts a year
# from each run of the script, which renews it.
max_lease_ttl = "8760h"

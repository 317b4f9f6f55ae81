#!/usr/bin/env bash
# Build the CPU variant of the CNNGen image with Podman and smoke-test it.
#
# Meant for a Debian 12 machine, run as root, that has no Docker engine and no access to image
# registries but can reach Debian's mirror and PyPI. The script
#   1. installs podman, buildah, runc, debootstrap and curl with apt-get when one is missing;
#   2. creates the local base image localhost/bookworm-base with debootstrap when it is missing;
#   3. builds the Dockerfile on that base with VARIANT=cpu and no pulls;
#   4. runs smoke checks inside the image: `cnngen check` on a phrase, the quickstart pipeline,
#      and JupyterLab started detached, whose contents API must list every notebook;
#   5. prints the image size and a PASS/FAIL line per check.
# It exits with status 1 when a check fails, and stops at the first failing setup or build step.
#
# Environment variables:
#   IMAGE          tag to build (default cnngen:cpu)
#   BASE_IMAGE     local base image to build on (default localhost/bookworm-base)
#   DEBIAN_MIRROR  mirror for debootstrap (default: the first URI in apt's sources)
#   SMOKE_PORT     port on 127.0.0.1 published for JupyterLab (default 18888)
#   SKIP_BUILD     set to 1 to smoke-test an image built earlier
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-cnngen:cpu}
BASE_IMAGE=${BASE_IMAGE:-localhost/bookworm-base}
SMOKE_PORT=${SMOKE_PORT:-18888}
SKIP_BUILD=${SKIP_BUILD:-0}
PHRASE='input conv max_pooling flatten dense output'
JUPYTER_TIMEOUT_S=90
# Keras finds Fashion-MNIST through the image's link to Debian's dataset-fashion-mnist, and
# pydot needs Graphviz's `dot`.
OFFLINE_CHECK='
import keras, pydot, tensorflow as tf
(x_train, _), (x_test, _) = keras.datasets.fashion_mnist.load_data()
assert x_train.shape == (60000, 28, 28), x_train.shape
assert x_test.shape == (10000, 28, 28), x_test.shape
assert pydot.Dot().create(format="png").startswith(b"\x89PNG")
print("tensorflow", tf.__version__, "keras", keras.__version__, "fashion-mnist", x_train.shape)
'

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

install_tools() {
  local -A package_of=([podman]=podman [buildah]=buildah [runc]=runc [debootstrap]=debootstrap
                       [curl]=curl [python3]=python3)
  local missing=() tool
  for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null || missing+=("${package_of[$tool]}")
  done
  if ((${#missing[@]})); then
    log "Installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  fi
}

configure_podman() {
  # The default runtime crun rejects the cgroup layout of some virtual machines, and Podman's
  # default ulimits can exceed what such a machine allows. A private containers.conf sets both
  # for this script's Podman calls only and leaves /etc/containers untouched.
  local conf_dir=/var/tmp/cnngen-container
  mkdir -p "$conf_dir"
  printf '[containers]\ndefault_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]\n[engine]\nruntime = "runc"\n' \
    >"$conf_dir/containers.conf"
  export CONTAINERS_CONF="$conf_dir/containers.conf"
}

debian_mirror() {
  local sources=/etc/apt/sources.list.d/debian.sources uri=""
  [[ -r $sources ]] && uri=$(awk '$1 == "URIs:" { print $2; exit }' "$sources")
  if [[ -z $uri && -r /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

create_base_image() {
  if podman image exists "$BASE_IMAGE"; then
    log "Base image $BASE_IMAGE exists"
    return
  fi
  local mirror=${DEBIAN_MIRROR:-$(debian_mirror)} rootfs
  rootfs=$(mktemp -d /var/tmp/cnngen-rootfs.XXXXXX)
  log "Creating $BASE_IMAGE with debootstrap from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror"

  # Copy the host's certificate authorities into the base. Where HTTPS is re-signed by a local
  # authority, pip inside the build fails with CERTIFICATE_VERIFY_FAILED without them.
  mkdir -p "$rootfs/usr/local/share/ca-certificates" "$rootfs/etc/ssl/certs"
  find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' \
    -exec cp {} "$rootfs/usr/local/share/ca-certificates/" \;
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"

  tar -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    - "$BASE_IMAGE"
  rm -rf "$rootfs"
}

build_image() {
  log "Building $IMAGE (VARIANT=cpu) on $BASE_IMAGE"
  local started_s=$SECONDS
  # Docker image format, because the OCI format ignores the Dockerfile's SHELL (bash, pipefail).
  podman build --pull=never --format docker \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg VARIANT=cpu \
    --tag "$IMAGE" "$REPO_ROOT"
  log "Built $IMAGE in $((SECONDS - started_s)) s"
}

SMOKE_CONTAINER="cnngen-smoke-$$"
remove_smoke_container() { podman rm --force "$SMOKE_CONTAINER" >/dev/null 2>&1 || true; }
trap remove_smoke_container EXIT

check_jupyter() {
  # Start JupyterLab detached and compare its listing of notebooks/ with the repository's
  # notebooks. It runs under `||` in run_check, where errexit is off, so each failure returns.
  local token listing status=0
  token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  listing=$(mktemp)
  podman run --detach --name "$SMOKE_CONTAINER" --publish "127.0.0.1:${SMOKE_PORT}:8888" \
    --env JUPYTER_TOKEN="$token" "$IMAGE" >/dev/null || return 1
  fetch_notebook_listing "$token" "$listing" && compare_notebook_listing "$listing" || status=$?
  remove_smoke_container
  rm -f "$listing"
  return "$status"
}

fetch_notebook_listing() {
  local token=$1 listing=$2 deadline_s=$((SECONDS + JUPYTER_TIMEOUT_S))
  until curl --silent --fail --header "Authorization: token $token" --output "$listing" \
      "http://127.0.0.1:${SMOKE_PORT}/api/contents/notebooks"; do
    if ((SECONDS > deadline_s)); then
      echo "Timed out after ${JUPYTER_TIMEOUT_S} s waiting for /api/contents/notebooks. Container log:"
      podman logs --tail 30 "$SMOKE_CONTAINER" 2>&1 | sed 's/token=[0-9a-f]*/token=.../g'
      return 1
    fi
    sleep 2
  done
}

compare_notebook_listing() {
  python3 - "$1" "$REPO_ROOT/notebooks" <<'EOF'
import json
import sys
from pathlib import Path

with open(sys.argv[1]) as file:
    content = json.load(file)["content"]
listed = sorted(item["name"] for item in content if item["type"] == "notebook")
expected = sorted(path.name for path in Path(sys.argv[2]).glob("*.ipynb"))
print(f"JupyterLab lists {len(listed)} notebook(s): {', '.join(listed) or 'none'}")
if not expected:
    sys.exit("the repository has no notebooks/*.ipynb, so there is nothing to compare")
if listed != expected:
    sys.exit(f"expected {', '.join(expected)}")
EOF
}

declare -a RESULTS=()
run_check() {
  # Run one smoke check, print its output, and record PASS or FAIL with its duration.
  local name=$1 started_s=$SECONDS status=0
  shift
  log "Check: $name"
  "$@" || status=$?
  local verdict=PASS
  ((status == 0)) || verdict="FAIL (exit $status)"
  RESULTS+=("$verdict  $name  [$((SECONDS - started_s)) s]")
}

main() {
  [[ $(id -u) == 0 ]] || die "run as root, because the build uses rootful Podman and debootstrap"
  install_tools
  configure_podman
  if [[ $SKIP_BUILD == 1 ]]; then
    podman image exists "$IMAGE" || die "image $IMAGE not found; build it by running without SKIP_BUILD=1"
  else
    create_base_image
    build_image
  fi

  run_check "TensorFlow, Graphviz and Fashion-MNIST without network" \
    podman run --rm --network none "$IMAGE" python -c "$OFFLINE_CHECK"
  run_check "cnngen check '$PHRASE'" podman run --rm "$IMAGE" cnngen check "$PHRASE"
  run_check "cnngen run parameters/quickstart.yaml" \
    podman run --rm "$IMAGE" cnngen run parameters/quickstart.yaml --output /tmp/q
  run_check "JupyterLab lists the notebooks" check_jupyter

  local size_bytes
  size_bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
  log "Image $IMAGE: $size_bytes bytes ($(numfmt --to=iec --suffix=B "$size_bytes"))"
  log "Smoke checks"
  printf '%s\n' "${RESULTS[@]}"
  if printf '%s\n' "${RESULTS[@]}" | grep -q '^FAIL'; then
    exit 1
  fi
}

main "$@"

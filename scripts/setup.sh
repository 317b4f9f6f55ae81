#!/usr/bin/env bash
# Set up CNNGen on a fresh Debian or Ubuntu machine: system packages, then a virtual
# environment in .venv with the package installed in editable mode.
#
#   bash scripts/setup.sh          what `cnngen run` needs (TensorFlow for the CPU)
#   bash scripts/setup.sh --dev    also the test tools, the ANTLR tool and PyTorch (for the
#                                  image and graph predictors)
#
# System packages are installed with apt-get when it is available and we are root (or sudo
# works without a password); otherwise the script lists the missing ones.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
extras="cpu"
if [[ "${1:-}" == "--dev" ]]; then
    extras="cpu,dev,torch"
fi

# Graphviz draws the plot_model pictures. Java runs the ANTLR tool (only to regenerate the
# parser). dataset-fashion-mnist puts the Fashion-MNIST files under /usr/share/datasets.
packages=(graphviz python3-venv)
[[ "$extras" == *dev* ]] && packages+=(default-jre-headless)
optional_packages=(dataset-fashion-mnist)

install_system_packages() {
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        if sudo -n true 2>/dev/null; then sudo="sudo"; else return 1; fi
    fi
    command -v apt-get >/dev/null || return 1
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    for package in "${optional_packages[@]}"; do
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
            || echo "note: optional package $package is not available here; Fashion-MNIST needs its files elsewhere"
    done
}

missing=()
command -v dot >/dev/null || missing+=(graphviz)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
[[ "$extras" == *dev* ]] && ! command -v java >/dev/null && missing+=(default-jre-headless)
[[ -d /usr/share/datasets/fashion-mnist ]] || missing+=(dataset-fashion-mnist)
if (( ${#missing[@]} )); then
    if ! install_system_packages; then
        echo "warning: cannot install system packages (${missing[*]}): install them with your package manager" >&2
    fi
fi

cd "$root"
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[$extras]"
echo "CNNGen is installed in $root/.venv (extras: $extras)"

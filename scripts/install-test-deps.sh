#!/usr/bin/env bash
# Installs what the test suite drives besides npm packages: Debian's etcd 3.4 (etcd-server,
# etcd-client), the reference the suite compares etcd-ts against; Prometheus (prometheus,
# promtool) for the metrics test; etcd's own alert rules and Grafana dashboard from Debian's
# etcd source package (Documentation/op-guide/), which the metrics test evaluates; Go with
# Debian's sprig and sigs.k8s.io/yaml, from which test/operator/chart-render.ts builds a
# `helm template` stand-in for the Helm chart's tests; and Kubernetes 1.20 from the shared tools.
# Checks that moto (an S3-compatible server, for the backup tests) can be imported.
# Needs root (or sudo).
set -euo pipefail
need=()
for p in etcd-server etcd-client openssl prometheus golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The Debian package starts a system etcd on 2379; the suite uses its own ports, but stop it so a
# developer's `npx etcd-ts` on 127.0.0.1:2379 does not collide with it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi

# The Debian package starts a system Prometheus on 9090; the metrics test runs its own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi

# etcd 3.4's alert rules and dashboard (test/metrics reads them from here).
OP_GUIDE=/usr/local/share/etcd-ts-test/op-guide
if [ ! -f "$OP_GUIDE/etcd3_alert.rules.yml" ] || [ ! -f "$OP_GUIDE/grafana.json" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  if [ "$(apt-cache showsrc etcd 2>/dev/null | grep -c '^Package: etcd')" -eq 0 ]; then
    # A deb-src entry mirroring the machine's Debian sources (same URIs, suites, keyring).
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      [ -f /etc/apt/sources.list.d/debian-src.sources ] ||
        sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources | $SUDO tee /etc/apt/sources.list.d/debian-src.sources >/dev/null
    else
      sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list | $SUDO tee /etc/apt/sources.list.d/debian-src.list >/dev/null
    fi
    $SUDO apt-get update -qq
  fi
  work="$(mktemp -d)"; chmod 755 "$work"
  (cd "$work" && apt-get -qq source --download-only etcd >/dev/null)
  orig="$(ls "$work"/etcd_*.orig.tar.* | head -n1)"
  tar -xf "$orig" -C "$work" --wildcards '*/Documentation/op-guide/etcd3_alert.rules.yml' '*/Documentation/op-guide/grafana.json'
  $SUDO mkdir -p "$OP_GUIDE"
  $SUDO cp "$work"/*/Documentation/op-guide/etcd3_alert.rules.yml "$work"/*/Documentation/op-guide/grafana.json "$OP_GUIDE"/
  basename "$orig" | $SUDO tee "$OP_GUIDE/SOURCE" >/dev/null
  rm -rf "$work"
fi

# Kubernetes v1.20 for the operator's tests (test/operator/kube-*.test.ts), built offline by the
# shared tools beside the repository (a no-op once built; about 10 minutes the first time on a
# machine). Without the tools the tests that need Kubernetes skip and say why.
KUBE_TOOLS="${KUBE_TOOLS:-$(cd "$(dirname "$0")/.." && pwd)/../shared/tools/kube}"
# A clone elsewhere than beside the shared folder finds the machine's copy.
[ -x "$KUBE_TOOLS/build.sh" ] || [ ! -x /work/shared/tools/kube/build.sh ] || KUBE_TOOLS=/work/shared/tools/kube
if [ "${SKIP_KUBE_BUILD:-0}" != 1 ] && [ -x "$KUBE_TOOLS/build.sh" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO nice -n 10 bash "$KUBE_TOOLS/build.sh" >/tmp/etcd-ts-kube-build.log 2>&1 || {
    echo "Kubernetes build failed (see /tmp/etcd-ts-kube-build.log): the operator's Kubernetes tests will skip" >&2
  }
else
  echo "no Kubernetes test tools at $KUBE_TOOLS: the operator's Kubernetes tests will skip" >&2
fi

# moto's S3 server (python3 -m moto.server, with boto3) is the S3-compatible server the backup
# tests start (test/harness/moto.ts). It is not a Debian package here: the machine must have it.
if ! python3 -c "import moto.server, boto3" >/dev/null 2>&1; then
  echo "ERROR: python3 cannot import moto.server and boto3: the S3 backup tests need moto's server (pip install 'moto[server]')" >&2
  exit 1
fi
python3 -c "import moto; print('moto', moto.__version__)"

etcd --version | sed -n 1p
etcdctl version | sed -n 1p
prometheus --version 2>&1 | sed -n 1p

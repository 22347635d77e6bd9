#!/usr/bin/env bash
# Installs what the test suite drives besides npm packages: Debian's etcd 3.4 (etcd-server,
# etcd-client), the reference the suite compares etcd-ts against; Go with Debian's sprig and
# sigs.k8s.io/yaml, from which test/operator/chart-render.ts builds a `helm template` stand-in
# for the Helm chart's tests. Needs root (or sudo).
set -euo pipefail
need=()
for p in etcd-server etcd-client openssl golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
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

# Kubernetes v1.20 for the operator's tests (test/operator/kube-*.test.ts), built offline by the
# shared tools beside the repository (a no-op once built; about 10 minutes the first time on a
# machine). Without the tools the tests that need Kubernetes skip and say why.
KUBE_TOOLS="${KUBE_TOOLS:-$(cd "$(dirname "$0")/.." && pwd)/../shared/tools/kube}"
if [ "${SKIP_KUBE_BUILD:-0}" != 1 ] && [ -x "$KUBE_TOOLS/build.sh" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO nice -n 10 bash "$KUBE_TOOLS/build.sh" >/tmp/etcd-ts-kube-build.log 2>&1 || {
    echo "Kubernetes build failed (see /tmp/etcd-ts-kube-build.log): the operator's Kubernetes tests will skip" >&2
  }
else
  echo "no Kubernetes test tools at $KUBE_TOOLS: the operator's Kubernetes tests will skip" >&2
fi

etcd --version | sed -n 1p
etcdctl version | sed -n 1p

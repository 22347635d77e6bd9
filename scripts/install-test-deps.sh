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

etcd --version | sed -n 1p
etcdctl version | sed -n 1p

#!/bin/sh
# Regenerates ../testdata/raftpb-golden.json: raft messages marshalled by etcd 3.4's own code
# (raftpb's marshaller and unmarshaller, rafthttp's message and msgappv2 encoders and decoder),
# the judge for server/src/rafthttp's codecs. Needs Go and etcd 3.4's source
# (golang-etcd-server-dev: /usr/share/gocode). rafthttp's encoders are unexported, so a copy of
# the package gets export_golden.go.in in a scratch GOPATH that shadows the installed one.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${ETCD_GOPATH:-/usr/share/gocode}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg="$work/src/go.etcd.io/etcd/etcdserver/api/rafthttp"
mkdir -p "$(dirname "$pkg")" "$work/src/golden"
cp -r "$src/src/go.etcd.io/etcd/etcdserver/api/rafthttp" "$pkg"
rm -f "$pkg"/*_test.go
cp "$here/export_golden.go.in" "$pkg/export_golden.go"
cp "$here/main.go.in" "$work/src/golden/main.go"
cd "$work/src/golden"
GOPATH="$work:$src" GO111MODULE=off GOCACHE="${GOCACHE:-$work/cache}" go run . > "$here/../testdata/raftpb-golden.json"
echo "wrote $here/../testdata/raftpb-golden.json"

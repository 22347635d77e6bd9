// A reader built from etcd 3.4's own Go packages (the golang-etcd-server-dev sources): it reads
// what etcd-ts writes the way an etcd 3.4 member does, and prints what it understood.
//
//	reader <dir>
//
// <dir>/store.json: a v2 store JSON (raft snapshot data): recovered with v2store's Recovery, the
// membership taken from it with RaftCluster.Recover, then saved again and compared.
// <dir>/entries.txt: lines "<kind> <hex>": v2 (an entry's data: must not unmarshal as an
// InternalRaftRequest, must as a v2 Request), ctx (a conf change context, read as
// ConfigChangeContext), member (a "members" bucket value, read as Member).
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"
	"strings"

	"github.com/coreos/go-semver/semver"
	"go.etcd.io/etcd/etcdserver/api/membership"
	"go.etcd.io/etcd/etcdserver/api/v2store"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/pkg/pbutil"
	"go.uber.org/zap"
)

func main() {
	dir := os.Args[1]
	data, err := ioutil.ReadFile(dir + "/store.json")
	if err != nil {
		panic(err)
	}
	st := v2store.New("/0", "/1")
	if err := st.Recovery(data); err != nil {
		fmt.Println("recovery-error", err)
		os.Exit(1)
	}
	cl := membership.NewCluster(zap.NewNop(), "")
	cl.SetStore(st)
	cl.Recover(func(*zap.Logger, *semver.Version) {})
	for _, m := range cl.Members() {
		b, _ := json.Marshal(m)
		fmt.Printf("member %s\n", b)
	}
	fmt.Println("version", cl.Version())
	saved, _ := st.Save()
	cut := func(b []byte) string { s := string(b); return s[:strings.Index(s, `,"Stats"`)] }
	fmt.Println("resave-identical", cut(saved) == cut(data))

	lines, _ := ioutil.ReadFile(dir + "/entries.txt")
	for _, line := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
		parts := strings.SplitN(line, " ", 2)
		b, _ := hex.DecodeString(parts[1])
		switch parts[0] {
		case "v2":
			var raftReq pb.InternalRaftRequest
			if pbutil.MaybeUnmarshal(&raftReq, b) {
				fmt.Println("v2 decodes-as-internal")
				continue
			}
			var r pb.Request
			pbutil.MustUnmarshal(&r, b)
			fmt.Printf("v2 %s %s %s %d\n", r.Method, r.Path, r.Val, r.ID)
		case "ctx":
			c := new(membership.ConfigChangeContext)
			if err := json.Unmarshal(b, c); err != nil {
				fmt.Println("ctx error", err)
				continue
			}
			fmt.Printf("ctx %s %v %v %q %v\n", c.Member.ID, c.PeerURLs, c.IsLearner, c.Name, c.IsPromote)
		case "member":
			m := new(membership.Member)
			if err := json.Unmarshal(b, m); err != nil {
				fmt.Println("member error", err)
				continue
			}
			again, _ := json.Marshal(m)
			fmt.Printf("backend %s %v\n", m.ID, string(again) == string(b))
		}
	}
}

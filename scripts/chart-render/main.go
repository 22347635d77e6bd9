// chart-render renders a Helm chart's templates the way `helm template` does, for tests on
// machines without helm: Go's text/template (Helm's engine) with the sprig functions and Helm's
// own include, tpl, toYaml, fromYaml, required and fail; values from values.yaml merged with -f
// files (later wins, maps merged deeply); .Release, .Chart and .Capabilities filled in
// (.Capabilities.APIVersions.Has: Kubernetes 1.20's built-in group/versions plus each -a, as
// helm template's --api-versions). Output: each
// non-empty template as "---\n# Source: <chart>/templates/<file>\n<text>". Builds offline against
// Debian's Go packages (GO111MODULE=off, GOPATH=/usr/share/gocode).
//
// Usage: chart-render [-f values.yaml]... [-a group/version]... [-n namespace] [-name release] CHART_DIR
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type files []string

// versionSet is .Capabilities.APIVersions: Has("group/version") as Helm's.
type versionSet []string

func (v versionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// builtinAPIVersions: what a Kubernetes 1.20 API server serves without add-ons (the ones charts test).
var builtinAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "batch/v1beta1", "policy/v1beta1", "rbac.authorization.k8s.io/v1",
	"coordination.k8s.io/v1", "apiextensions.k8s.io/v1", "networking.k8s.io/v1", "autoscaling/v1",
	"storage.k8s.io/v1", "admissionregistration.k8s.io/v1", "discovery.k8s.io/v1beta1",
}

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func readYAML(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func main() {
	var valueFiles files
	flag.Var(&valueFiles, "f", "values file (repeatable)")
	var apiVersions files
	flag.Var(&apiVersions, "a", "an API group/version the cluster serves besides the built-in ones (repeatable)")
	ns := flag.String("n", "default", "release namespace")
	name := flag.String("name", "release-name", "release name")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: chart-render [-f values.yaml]... [-n ns] [-name release] CHART_DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	if err := render(dir, *name, *ns, valueFiles, append(versionSet(builtinAPIVersions), apiVersions...)); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func render(dir, release, ns string, valueFiles []string, apiVersions versionSet) error {
	chart, err := readYAML(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range valueFiles {
		v, err := readYAML(f)
		if err != nil {
			return err
		}
		values = merge(values, v)
	}
	// Helm exposes Chart.yaml's fields capitalised (.Chart.Name, .Chart.AppVersion).
	chartObj := map[string]interface{}{}
	for k, v := range chart {
		chartObj[strings.ToUpper(k[:1])+k[1:]] = v
	}
	top := map[string]interface{}{
		"Values":       values,
		"Chart":        chartObj,
		"Release":      map[string]interface{}{"Name": release, "Namespace": ns, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Capabilities": map[string]interface{}{"KubeVersion": map[string]interface{}{"Version": "v1.20.2", "Major": "1", "Minor": "20"}, "APIVersions": apiVersions},
		"Template":     map[string]interface{}{"BasePath": filepath.Base(dir) + "/templates"},
	}

	t := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		tt, err := c.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = tt.Execute(&buf, data)
		return buf.String(), err
	}
	funcs["toYaml"] = func(v interface{}) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(b), "\n")
	}
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		_ = yaml.Unmarshal([]byte(s), &m)
		return m
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	t.Funcs(funcs)

	paths, err := filepath.Glob(filepath.Join(dir, "templates", "*"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	var names []string
	for _, p := range paths {
		base := filepath.Base(p)
		if !strings.HasSuffix(base, ".yaml") && !strings.HasSuffix(base, ".tpl") && !strings.HasSuffix(base, ".txt") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		name := filepath.Base(dir) + "/templates/" + base
		if _, err := t.New(name).Parse(string(b)); err != nil {
			return err
		}
		if !strings.HasPrefix(base, "_") && strings.HasSuffix(base, ".yaml") {
			names = append(names, name)
		}
	}
	for _, n := range names {
		var buf bytes.Buffer
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": n, "BasePath": filepath.Base(dir) + "/templates"}
		if err := t.ExecuteTemplate(&buf, n, data); err != nil {
			return err
		}
		out := strings.TrimSpace(buf.String())
		if out == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", n, out)
	}
	return nil
}

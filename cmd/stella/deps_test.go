package main

import (
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// mayReachNetwork lists every package of the module, by its path in the
// module, and says whether it may reach the network. A package that may not
// must not depend, directly or not, on any of onlineOnly. A package `go list`
// finds that is not here fails TestOfflinePackagesStayOffline: whoever adds a
// package decides here, once, which side it is on.
var mayReachNetwork = map[string]bool{
	// The one package that talks to the network.
	"mirror": true,
	// The CLI composes every package and alone knows urfave/cli.
	"cmd/stella": true,
	// The test harness starts registries and serves them over HTTP; its
	// command builds the tools the tests use.
	"internal/regtest":                true,
	"internal/regtest/cmd/buildtools": true,
	// A step's allowlist network: the runner relays its connections to
	// the destinations its pack allows; the sandbox starts that relay.
	"egress":  true,
	"sandbox": true,
	// The Prometheus client imports net/http (expfmt's content
	// negotiation, expvar); metrics opens no connection. serve is the
	// HTTP server of `stella serve`.
	"metrics": true,
	"serve":   true,
	// Notifications: webhooks to the hosts the site configures (the
	// sealed allowlist gates them).
	"notify": true,
	// Traces: spans to the OpenTelemetry collector the site configures
	// (the sealed allowlist gates it); package traces derives them offline.
	"traces/otlp": true,
	"traces":      false,

	"admission":         false,
	"approve":           false,
	"backoff":           false,
	"canonical":         false,
	"display":           false,
	"doctor":            false,
	"artifact":          false,
	"bundle":            false,
	"cache":             false,
	"cache/cachetest":   false,
	"evidence":          false,
	"integrity":         false,
	"internal/safefile": false,
	"keys":              false,
	"pack":              false,
	"plan":              false,
	"plans":             false,
	"redact":            false,
	"run":               false,
	"run/process":       false,
	"runs":              false,
	"secret":            false,
	"signature":         false,
	"trust":             false,
	"vault":             false,
}

// onlineOnly are the packages an offline package must not depend on.
var onlineOnly = []string{"net/http", "github.com/urfave/cli/v2", modulePath + "/mirror"}

// TestOfflinePackagesStayOffline keeps the network, the CLI framework and
// mirror out of every package of the module that mayReachNetwork keeps
// offline, and fails for a package it does not list.
func TestOfflinePackagesStayOffline(t *testing.T) {
	pkgs, err := listModule()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	deps := map[string][]string{}
	for _, p := range pkgs {
		paths = append(paths, p.ImportPath)
		deps[p.ImportPath] = p.Deps
	}
	for _, problem := range offlineProblems(paths, deps, mayReachNetwork) {
		t.Error(problem)
	}
}

// offlineProblems checks the packages pkgs (import paths) of the module,
// each with the packages it depends on in deps, against table (path in the
// module → may reach the network). It returns one problem per package the
// table does not list, per row of the table naming no package, and per
// dependency on onlineOnly of a package the table keeps offline.
func offlineProblems(pkgs []string, deps map[string][]string, table map[string]bool) []string {
	var problems []string
	found := map[string]bool{}
	for _, p := range pkgs {
		rel, ok := moduleRelative(p)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is not a package of module %s", p, modulePath))
			continue
		}
		found[rel] = true
		online, listed := table[rel]
		if !listed {
			problems = append(problems, fmt.Sprintf("package %s is new: add it to mayReachNetwork in cmd/stella/deps_test.go (false unless it must reach the network)", rel))
			continue
		}
		if online {
			continue
		}
		for _, f := range onlineOnly {
			if slices.Contains(deps[p], f) {
				problems = append(problems, fmt.Sprintf("package %s depends on %s (directly or not): it must stay offline", rel, f))
			}
		}
	}
	var stale []string
	for rel := range table {
		if !found[rel] {
			stale = append(stale, rel)
		}
	}
	sort.Strings(stale)
	for _, rel := range stale {
		problems = append(problems, fmt.Sprintf("mayReachNetwork lists %s, which go list does not find: remove its row", rel))
	}
	return problems
}

// TestOfflinePackagesStayOfflineCanFail shows the guard failing: for a
// package the table does not list, and for an offline package that imports
// net/http.
func TestOfflinePackagesStayOfflineCanFail(t *testing.T) {
	table := map[string]bool{"mirror": true, "pack": false, "cache": false}
	deps := map[string][]string{
		modulePath + "/mirror": {"net/http", modulePath + "/cache"},
		modulePath + "/pack":   {"encoding/json"},
		modulePath + "/cache":  {"os"},
	}
	for _, tc := range []struct {
		name  string
		pkgs  []string
		deps  map[string][]string
		table map[string]bool
		want  []string
	}{
		{
			name: "all listed and offline",
			pkgs: []string{modulePath + "/cache", modulePath + "/mirror", modulePath + "/pack"},
			deps: deps, table: table,
		},
		{
			name: "unknown package",
			pkgs: []string{modulePath + "/cache", modulePath + "/mirror", modulePath + "/pack", modulePath + "/server"},
			deps: deps, table: table,
			want: []string{"package server is new: add it to mayReachNetwork in cmd/stella/deps_test.go (false unless it must reach the network)"},
		},
		{
			name: "offline package imports net/http",
			pkgs: []string{modulePath + "/cache", modulePath + "/mirror", modulePath + "/pack"},
			deps: map[string][]string{
				modulePath + "/mirror": {"net/http"},
				modulePath + "/pack":   {"encoding/json", "net/http"},
				modulePath + "/cache":  {"os"},
			},
			table: table,
			want:  []string{"package pack depends on net/http (directly or not): it must stay offline"},
		},
		{
			name: "offline package reaches mirror",
			pkgs: []string{modulePath + "/cache", modulePath + "/mirror", modulePath + "/pack"},
			deps: map[string][]string{
				modulePath + "/mirror": {"net/http"},
				modulePath + "/pack":   {"encoding/json"},
				modulePath + "/cache":  {"github.com/urfave/cli/v2", modulePath + "/mirror"},
			},
			table: table,
			want: []string{
				"package cache depends on github.com/urfave/cli/v2 (directly or not): it must stay offline",
				"package cache depends on stellaops.io/stella/mirror (directly or not): it must stay offline",
			},
		},
		{
			name: "row for a package that is gone",
			pkgs: []string{modulePath + "/cache", modulePath + "/mirror"},
			deps: deps, table: table,
			want: []string{"mayReachNetwork lists pack, which go list does not find: remove its row"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := offlineProblems(tc.pkgs, tc.deps, tc.table)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("offlineProblems (-want +got):\n%s", diff)
			}
		})
	}
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/sandbox"
	"stellaops.io/stella/vault"
)

func TestMain(m *testing.M) {
	// The sandbox re-executes this binary as a step's helper.
	sandbox.Init()
	// Key files and passphrase vaults written by this binary (in process,
	// and as the stella of scripts and STELLA_RUN_MAIN) are sealed with a
	// cheap scrypt cost: at age's default each costs about eight seconds of
	// CPU under -race, and the tests write and open well over a hundred.
	// The format is the same and opening reads the cost from the file; the
	// default is pinned by keys' TestProductionScryptWorkFactor.
	keys.SetScryptWorkFactor(testScryptWorkFactor)
	vault.SetScryptWorkFactor(testScryptWorkFactor)
	// Tests that need the real binary as a separate process (killed at
	// random points, run concurrently) re-execute this test binary with
	// STELLA_RUN_MAIN=1.
	if os.Getenv("STELLA_RUN_MAIN") == "1" {
		os.Args = append([]string{"stella"}, os.Args[1:]...)
		code := runMain()
		writeHWM(os.Getenv("STELLA_BENCH_HWM_FILE"))
		os.Exit(code)
	}
	// Processes the tests start (the CLI, killed runners) skip the race
	// detector's one-second sleep at exit; see scriptParams.
	if _, set := os.LookupEnv("GORACE"); !set {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	testscript.Main(m, map[string]func(){
		"stella": func() {
			// A script moves the clock with STELLA_TEST_CLOCK_OFFSET (a Go
			// duration): only this test binary reads it.
			if v := os.Getenv("STELLA_TEST_CLOCK_OFFSET"); v != "" {
				d, err := time.ParseDuration(v)
				if err != nil {
					fmt.Fprintln(os.Stderr, "STELLA_TEST_CLOCK_OFFSET:", err)
					os.Exit(2)
				}
				clockOffset = d
			}
			// A script makes one doctor check crash with
			// STELLA_TEST_DOCTOR_CRASH=ID: only this test binary reads it.
			doctorCrash = os.Getenv("STELLA_TEST_DOCTOR_CRASH")
			os.Exit(runMain())
		},
	})
}

// testScryptWorkFactor is the scrypt cost (log2 N) of the key files and
// vaults the tests seal: what keys' own tests use.
const testScryptWorkFactor = 10

// TestScripts runs every user flow in testdata/script/*.txtar against the
// real main, each in a fresh work folder and a fresh STELLA_HOME.
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams(t, "../../testdata/script"))
}

func scriptParams(t *testing.T, dir string) testscript.Params {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return testscript.Params{
		Dir:                 dir,
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("STELLA_HOME", filepath.Join(env.WorkDir, ".stella"))
			// Under -race every process of this binary sleeps a second
			// when it exits (GORACE atexit_sleep_ms, for late reports);
			// scripts start hundreds. Races are still reported when they
			// happen; only that grace at exit goes.
			env.Setenv("GORACE", "atexit_sleep_ms=0")
			env.Setenv("PACKS", filepath.Join(root, "testdata", "packs"))
			env.Setenv("TESTDATA", filepath.Join(root, "testdata"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// registry NAME [tls] [auth] [referrers] [debian] starts a real
			// registry on loopback for the rest of the test run and sets
			// $NAME (host:port), $NAME_CA, $NAME_USER, $NAME_PASS, $NAME_STORAGE.
			"registry": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 1 {
					ts.Fatalf("usage: registry NAME [tls] [auth] [referrers] [debian]")
				}
				var opts regtest.Options
				referrers := false
				for _, a := range args[1:] {
					switch a {
					case "tls":
						opts.TLS = true
					case "auth":
						opts.Username, opts.Password = "robot", "s3cret-registry-pass"
					case "referrers":
						referrers = true
					case "debian":
						opts.Binary = regtest.DebianBinary
					default:
						ts.Fatalf("registry: unknown option %q", a)
					}
				}
				var r *regtest.Registry
				if referrers {
					r = regtest.StartReferrers(t)
				} else {
					r = regtest.Start(t, opts)
				}
				name := args[0]
				ts.Setenv(name, r.Host)
				ts.Setenv(name+"_CA", r.CAFile)
				ts.Setenv(name+"_USER", r.Username)
				ts.Setenv(name+"_PASS", r.Password)
				ts.Setenv(name+"_STORAGE", r.StorageDir)
			},
			// tool NAME sets $NAME, in upper case, to the path of a tool
			// declared in tools/go.mod (oras, crane, cosign, olareg), built once
			// per machine (`make tools`).
			"tool": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: tool NAME")
				}
				ts.Setenv(strings.ToUpper(args[0]), regtest.Tool(t, args[0]))
			},
			// jsonvar NAME KEY sets $NAME to the string value of KEY in the
			// JSON object the last command printed on stdout (the first
			// object, when it printed a list).
			"jsonvar": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: jsonvar NAME KEY")
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &m); err != nil {
					var list []map[string]any
					if lerr := json.Unmarshal([]byte(ts.ReadFile("stdout")), &list); lerr != nil || len(list) == 0 {
						ts.Fatalf("jsonvar: stdout is not a JSON object nor a list of them: %v", err)
					}
					m = list[0]
				}
				v, ok := m[args[1]].(string)
				if !ok {
					ts.Fatalf("jsonvar: no string %q in stdout", args[1])
				}
				ts.Setenv(args[0], v)
			},
			// craftbundle MODE IN OUT [ARG...] writes a hostile but
			// well-formed bundle from one stella wrote (craft_test.go).
			"craftbundle": craftBundle,
			// exitcode N cmd args... runs cmd and checks its exact exit code.
			"exitcode": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 2 {
					ts.Fatalf("usage: exitcode N command [args...]")
				}
				want, err := strconv.Atoi(args[0])
				if err != nil {
					ts.Fatalf("exitcode: %v", err)
				}
				err = ts.Exec(args[1], args[2:]...)
				got := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					got = ee.ExitCode()
				} else if err != nil {
					ts.Fatalf("exitcode: %v", err)
				}
				if got != want {
					ts.Fatalf("%s exited %d, want %d", args[1], got, want)
				}
			},
		},
	}
}

package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	// Tests that need the real binary as a separate process (killed at
	// random points, run concurrently) re-execute this test binary with
	// STELLA_RUN_MAIN=1.
	if os.Getenv("STELLA_RUN_MAIN") == "1" {
		os.Args = append([]string{"stella"}, os.Args[1:]...)
		os.Exit(run())
	}
	testscript.Main(m, map[string]func(){
		"stella": func() { os.Exit(run()) },
	})
}

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
			env.Setenv("PACKS", filepath.Join(root, "testdata", "packs"))
			env.Setenv("TESTDATA", filepath.Join(root, "testdata"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
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

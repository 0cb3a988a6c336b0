package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stellaops.io/stella/internal/regtest"
)

// TestAdmissionPolicyEveryPath runs every path that lets content in (pack
// import, pack verify, mirror pull of a bundle, mirror pull from a real
// registry) under every combination of where strictness comes from (nothing,
// sealed mode, the configuration) and the flags (none, --require-signature,
// --insecure-skip-signature, both), on an unsigned pack. Every refusal leaves
// the cache empty and consistent; every admission stores the pack.
func TestAdmissionPolicyEveryPath(t *testing.T) {
	dir := t.TempDir()
	author := filepath.Join(dir, "author")
	bundleFile := filepath.Join(dir, "unsigned.tar")
	if r := stella(t, author, nil, "pack", "build", "-o", bundleFile, "../../testdata/packs/backup-database"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	reg := regtest.Start(t, regtest.Options{})
	repo := reg.Host + "/packs/backup-database"
	if r := stella(t, author, nil, "pack", "push", "--plain-http", "backup-database:0.4.2", repo); r.code != 0 {
		t.Fatal(r.stderr)
	}

	type where struct {
		name   string
		config string
		global []string
	}
	wheres := []where{
		{name: "plain"},
		{name: "sealed", config: fmt.Sprintf("sealed: true\nregistries:\n  - host: %s\n    plainHTTP: true\n", reg.Host)},
		{name: "sealed-flag", global: []string{"--sealed"}, config: fmt.Sprintf("registries:\n  - host: %s\n    plainHTTP: true\n", reg.Host)},
		{name: "configured", config: "requireSignature: true\n"},
	}
	flagSets := map[string][]string{
		"none":    nil,
		"require": {"--require-signature"},
		"skip":    {"--insecure-skip-signature"},
		"both":    {"--require-signature", "--insecure-skip-signature"},
	}
	// want is the exit code and error code of an unsigned pack under each
	// combination; "" means admitted.
	want := func(w, flags string) (int, string) {
		strict := w != "plain"
		switch {
		case flags == "both":
			return exitGeneric, "ERR_PACK_USAGE"
		case flags == "skip" && (w == "sealed" || w == "sealed-flag"):
			return exitSealed, "ERR_PACK_SEALED_POLICY"
		case flags == "skip" && w == "configured":
			return exitTrust, "ERR_PACK_POLICY_RELAXATION_REFUSED"
		case flags == "skip":
			return 0, ""
		case flags == "require" || strict:
			return exitTrust, "ERR_PACK_SIGNATURE_INVALID"
		}
		return 0, ""
	}
	paths := map[string]func(flags []string) []string{
		"import": func(f []string) []string {
			return append(append([]string{"pack", "import"}, f...), "--bundle", bundleFile)
		},
		"verify": func(f []string) []string {
			return append(append([]string{"pack", "verify"}, f...), "--bundle", bundleFile)
		},
		"mirror-file": func(f []string) []string { return append(append([]string{"pack", "mirror", "pull"}, f...), bundleFile) },
		"registry": func(f []string) []string {
			return append(append([]string{"pack", "mirror", "pull", "--plain-http"}, f...), repo+":0.4.2")
		},
	}
	n := 0
	for _, w := range wheres {
		for fname, flags := range flagSets {
			for pname, args := range paths {
				n++
				t.Run(w.name+"/"+fname+"/"+pname, func(t *testing.T) {
					home := filepath.Join(dir, fmt.Sprintf("h%d", n))
					if err := os.MkdirAll(home, 0o700); err != nil {
						t.Fatal(err)
					}
					if w.config != "" {
						writeFile(t, filepath.Join(home, "config.yaml"), w.config)
					}
					r := stella(t, home, nil, append(append([]string{}, w.global...), args(flags)...)...)
					code, errCode := want(w.name, fname)
					if r.code != code || (errCode != "" && !strings.Contains(r.stderr, errCode)) {
						t.Fatalf("want exit %d %s, got %d:\nstdout: %s\nstderr: %s", code, errCode, r.code, r.stdout, r.stderr)
					}
					if fname == "skip" && code == 0 && !strings.Contains(r.stderr, "warning: --insecure-skip-signature") {
						t.Errorf("the relaxation must be printed: %s", r.stderr)
					}
					if code != 0 || pname == "verify" {
						assertEmptyCache(t, home)
						return
					}
					l := stella(t, home, nil, "--output", "json", "pack", "list", "--kind", "pack")
					var arts []artifactSummary
					if err := json.Unmarshal([]byte(l.stdout), &arts); err != nil || len(arts) != 1 || arts[0].Ref != "backup-database:0.4.2" {
						t.Fatalf("admitted pack not in the cache: %v %s", err, l.stdout)
					}
					if fname == "skip" {
						s := stella(t, home, nil, "pack", "show", "backup-database:0.4.2")
						if !strings.Contains(s.stdout, "insecure-skip-signature") {
							t.Errorf("the relaxation must be recorded in the import record:\n%s", s.stdout)
						}
					}
				})
			}
		}
	}
}

// TestRegistryPullBindsNames: a registry's name for a pack (the repository's
// last element and the tag) must be the name its signed manifest carries. A
// signed pack pushed under another repository or tag is refused on pull,
// with nothing stored, even though its signature verifies; pulled by digest
// from a repository of its own name, it is admitted.
func TestRegistryPullBindsNames(t *testing.T) {
	dir := t.TempDir()
	id := filepath.Join(dir, "id.agekey")
	writeFile(t, id, "AGE-SECRET-KEY-18K6XQ6TP3UFN4HRDXX554HPT66W659FMNA8U2YCGAX8U4L09PXAS07F66U\n")
	env := map[string]string{"STELLA_VAULT_IDENTITY_FILE": id}
	author := filepath.Join(dir, "author")
	for _, args := range [][]string{
		{"vault", "init"},
		{"key", "generate", "--dir", dir, "--vault", "pub", "pub"},
		{"pack", "build", "--sign", "--key", "vault:pub", "../../testdata/packs/backup-database"},
	} {
		if r := stella(t, author, env, args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r.stderr)
		}
	}
	reg := regtest.Start(t, regtest.Options{})
	var digest string
	for _, dst := range []string{"/packs/backup-database", "/packs/rotate-registry-credentials:0.4.2", "/packs/backup-database:9.9.9", "/packs/backup-database:latest"} {
		r := stella(t, author, env, "--output", "json", "pack", "push", "--plain-http", "backup-database:0.4.2", reg.Host+dst)
		if r.code != 0 {
			t.Fatalf("push %s: %s", dst, r.stderr)
		}
		var out mirrorOut
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Artifacts) == 0 {
			t.Fatalf("push output: %v %s", err, r.stdout)
		}
		digest = out.Artifacts[0].Digest.String()
	}
	for _, tc := range []struct {
		ref  string
		code int
	}{
		{"/packs/rotate-registry-credentials:0.4.2", exitInvalid},
		{"/packs/backup-database:9.9.9", exitInvalid},
		{"/packs/backup-database:latest", exitInvalid},
		{"/packs/rotate-registry-credentials@" + digest, exitInvalid},
		{"/packs/backup-database@" + digest, 0},
		{"/packs/backup-database:0.4.2", 0},
	} {
		for _, flags := range [][]string{{"--require-signature"}, {"--insecure-skip-signature"}, nil} {
			home := t.TempDir()
			if r := stella(t, home, nil, "trust", "add", "--key", filepath.Join(dir, "pub.pub"), "--role", "publisher", "pub"); r.code != 0 {
				t.Fatal(r.stderr)
			}
			args := append(append([]string{"pack", "mirror", "pull", "--plain-http"}, flags...), reg.Host+tc.ref)
			r := stella(t, home, nil, args...)
			if r.code != tc.code {
				t.Fatalf("%v: want exit %d, got %d:\n%s%s", args, tc.code, r.code, r.stdout, r.stderr)
			}
			if tc.code != 0 {
				if !strings.Contains(r.stderr, "ERR_PACK_REF_MISMATCH") || !strings.Contains(r.stderr, "backup-database:0.4.2") {
					t.Fatalf("%v: the refusal must name the signed ref:\n%s", args, r.stderr)
				}
				assertEmptyCache(t, home)
				continue
			}
			if s := stella(t, home, nil, "pack", "show", "backup-database:0.4.2"); s.code != 0 || !strings.Contains(s.stdout, digest) {
				t.Fatalf("%v: pulled pack not shown: %s %s", args, s.stdout, s.stderr)
			}
		}
	}
}

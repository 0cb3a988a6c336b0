package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/signature"
)

// TestOrasReadsBundleFile: a stella bundle file is an OCI layout other tools
// read in place: oras lists its tag, fetches its manifest and pulls the pack
// folder back byte for byte.
func TestOrasReadsBundleFile(t *testing.T) {
	oras := regtest.Tool(t, "oras")
	home, dir := t.TempDir(), t.TempDir()
	b := filepath.Join(dir, "packs.stella.tar")
	src := "../../testdata/packs/remediate-cve"
	if r := stella(t, home, nil, "pack", "build", "-o", b, src); r.code != 0 {
		t.Fatal(r.stderr)
	}
	p, err := pack.LoadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(oras, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("oras %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if tags := run("repo", "tags", "--oci-layout", b); strings.TrimSpace(tags) != "remediate-cve:1.0.0" {
		t.Fatalf("oras repo tags: %q", tags)
	}
	if m := run("manifest", "fetch", "--oci-layout", b+"@"+string(a.Digest())); m != string(a.ManifestBytes()) {
		t.Fatalf("oras manifest fetch differs from the manifest stella built")
	}
	out := filepath.Join(dir, "pulled")
	run("pull", "--oci-layout", b+"@"+string(a.Digest()), "-o", out)
	for _, f := range p.Files {
		want, _ := os.ReadFile(filepath.Join(src, f.Path))
		got, err := os.ReadFile(filepath.Join(out, f.Path))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: pulled file differs (%v)", f.Path, err)
		}
	}
}

// TestCosignVerifiesSignature: the DSSE envelope of a stella pack signature
// verifies with `cosign verify-blob-attestation` given only the public key,
// offline, with the pack manifest as the blob.
func TestCosignVerifiesSignature(t *testing.T) {
	cosign := regtest.Tool(t, "cosign")
	ctx := context.Background()
	dir := t.TempDir()
	p, err := pack.LoadDir("../../testdata/packs/backup-database")
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := keys.Generate(keys.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signature.Sign(ctx, pair, a.Manifest, a.Ref)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := content.FetchAll(ctx, sig, sig.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	env, err := content.FetchAll(ctx, sig, m.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"pub.pem": pair.PublicPEM(), "env.json": env, "manifest.json": a.ManifestBytes(), "other.json": []byte("{}")}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(blob string) ([]byte, error) {
		cmd := exec.Command(cosign, "verify-blob-attestation", "--key", "pub.pem", "--signature", "env.json",
			"--type", keys.PredicatePackSignature, "--insecure-ignore-tlog=true", "--check-claims=true", blob)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"))
		return cmd.CombinedOutput()
	}
	if out, err := verify("manifest.json"); err != nil {
		t.Fatalf("cosign refused a stella signature: %v\n%s", err, out)
	}
	if out, err := verify("other.json"); err == nil {
		t.Fatalf("cosign accepted the signature for another blob:\n%s", out)
	}
}

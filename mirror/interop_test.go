package mirror_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
	"stellaops.io/stella/pack"
)

const packDir = "../testdata/packs/backup-database"

// runTool runs a tool built from tools/go.mod with a HOME of its own and returns its
// standard output.
func runTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+home, "XDG_CONFIG_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// packSource builds the sample pack as mirror.Push gets it from `stella pack build`:
// the artifact.Pack (a read-only storage) plus a signature referrer.
func packSource(t *testing.T) (*pack.Pack, content.ReadOnlyGraphStorage, ocispec.Descriptor, ocispec.Descriptor) {
	t.Helper()
	p, err := pack.LoadDir(packDir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	extra := memory.New()
	ctx := testContext(t)
	push := func(mediaType string, data []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mediaType, data)
		if err := extra.Push(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	subject := plainDesc(a.Manifest)
	sig := (&fixture{}).pushManifest(t, push, ocispec.Manifest{
		ArtifactType: artifact.ArtifactTypeSignature,
		Config:       push(artifact.MediaTypeEmptyJSON, []byte("{}")),
		Layers:       []ocispec.Descriptor{push(artifact.MediaTypeDSSE, []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`))},
		Subject:      &subject,
		Annotations:  map[string]string{artifact.AnnotationCreated: testCreated},
	})
	return p, &graphStorage{ReadOnlyStorage: a, extra: extra}, a.Manifest, sig
}

// Tools users already have read what mirror pushes: `oras pull` gives back the pack
// folder byte for byte, `oras discover` and `crane manifest` see the signature.
func TestInteropWithOrasAndCrane(t *testing.T) {
	t.Parallel()
	orasBin := regtest.Tool(t, "oras")
	craneBin := regtest.Tool(t, "crane")
	p, src, manifest, sig := packSource(t)
	tag := p.Manifest.Metadata.Version

	for _, tc := range []struct {
		name   string
		r      *regtest.Registry
		native bool
	}{
		{"distribution", regtest.Start(t, regtest.Options{}), false},
		{"olareg", regtest.StartReferrers(t), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.r.Host + "/stella/" + p.Manifest.Metadata.Name
			if _, err := mirror.Push(testContext(t), src, []mirror.Artifact{{Descriptor: manifest, Tag: tag}}, mustRef(t, ref), optionsFor(tc.r)); err != nil {
				t.Fatalf("push: %v", err)
			}

			out := t.TempDir()
			runTool(t, orasBin, "pull", "--plain-http", ref+":"+tag, "-o", out)
			var want, got []string
			for _, f := range p.Files {
				want = append(want, f.Path)
				orig, err := os.ReadFile(filepath.Join(packDir, filepath.FromSlash(f.Path)))
				if err != nil {
					t.Fatal(err)
				}
				pulled, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(f.Path)))
				if err != nil || !bytes.Equal(pulled, orig) {
					t.Errorf("oras pull: %s differs from the pack (%v)", f.Path, err)
				}
			}
			err := filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					rel, _ := filepath.Rel(out, path)
					got = append(got, filepath.ToSlash(rel))
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("oras pull wrote %v; want the pack's files %v", got, want)
			}

			discovered := runTool(t, orasBin, "discover", "--plain-http", "--format", "json", ref+"@"+manifest.Digest.String())
			if !strings.Contains(discovered, sig.Digest.String()) || !strings.Contains(discovered, artifact.ArtifactTypeSignature) {
				t.Errorf("oras discover does not list the signature %s:\n%s", sig.Digest, discovered)
			}
			if !tc.native {
				index := runTool(t, craneBin, "manifest", "--insecure", ref+":sha256-"+manifest.Digest.Encoded())
				if !strings.Contains(index, sig.Digest.String()) {
					t.Errorf("crane manifest of the tag-schema index does not list the signature %s:\n%s", sig.Digest, index)
				}
			}
			sigManifest := runTool(t, craneBin, "manifest", "--insecure", ref+"@"+sig.Digest.String())
			if !strings.Contains(sigManifest, manifest.Digest.String()) {
				t.Errorf("crane manifest of the signature does not name its subject %s:\n%s", manifest.Digest, sigManifest)
			}
		})
	}
}

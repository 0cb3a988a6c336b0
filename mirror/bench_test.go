package mirror_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

// benchSizeEnv overrides the size of the benchmark pack, in MiB (default 256).
const benchSizeEnv = "STELLA_BENCH_MIRROR_MIB"

const benchLayers = 10

// benchBundle writes a bundle file holding one pack of benchLayers random
// (incompressible) layers of layerSize bytes; layer changed (if >= 0) gets other bytes.
func benchBundle(b *testing.B, path string, layerSize int, seed uint64, changed int) ocispec.Descriptor {
	b.Helper()
	ctx := context.Background()
	store := memory.New()
	push := func(mediaType string, data []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mediaType, data)
		if err := store.Push(ctx, d, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		return d
	}
	var layers []ocispec.Descriptor
	for i := range benchLayers {
		s := seed
		if i == changed {
			s = seed + 1000
		}
		data := make([]byte, layerSize)
		rng := rand.NewChaCha8([32]byte{byte(s), byte(i)})
		_, _ = rng.Read(data)
		l := push(artifact.MediaTypePackFile, data)
		l.Annotations = map[string]string{artifact.AnnotationTitle: fmt.Sprintf("files/layer-%d.bin", i)}
		layers = append(layers, l)
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifact.ArtifactTypePack,
		Config:       push(artifact.MediaTypePackConfig, []byte(`{"apiVersion":"stellaops.io/pack.v1","files":[],"name":"bench","version":"1.0.0"}`)),
		Layers:       layers,
		Annotations:  map[string]string{artifact.AnnotationRef: "bench:1.0.0", artifact.AnnotationCreated: testCreated},
	}
	data, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	md := push(ocispec.MediaTypeImageManifest, data)
	md.ArtifactType = artifact.ArtifactTypePack
	if _, err := bundle.WriteFile(ctx, path, store, []bundle.Entry{{Descriptor: md, Kind: artifact.KindPack, Ref: "bench:1.0.0"}}, bundle.WriteOptions{}); err != nil {
		b.Fatal(err)
	}
	return md
}

func openBundle(b *testing.B, path string) *bundle.Reader {
	b.Helper()
	r, err := bundle.Open(context.Background(), path, bundle.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close() })
	return r
}

// BenchmarkMirrorPush mirrors a pack of 10 random layers (256 MiB by default, see
// benchSizeEnv) from a bundle file into a local distribution registry, against
// `oras copy --from-oci-layout` of the same bundle into another registry of the same
// kind; then re-mirrors after one layer changed.
func BenchmarkMirrorPush(b *testing.B) {
	mib := 256
	if s := os.Getenv(benchSizeEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < benchLayers {
			b.Fatalf("%s=%q: want a number of MiB, at least %d", benchSizeEnv, s, benchLayers)
		}
		mib = n
	}
	layerSize := mib << 20 / benchLayers
	total := float64(layerSize * benchLayers)
	dir := b.TempDir()
	path := filepath.Join(dir, "bench.stella.tar")
	var manifest ocispec.Descriptor
	var src *bundle.Reader
	setup := func(sb *testing.B) { // only for the sub-benchmarks that need the large pack
		if src == nil {
			manifest = benchBundle(sb, path, layerSize, 1, -1)
			r, err := bundle.Open(context.Background(), path, bundle.OpenOptions{})
			if err != nil {
				sb.Fatal(err)
			}
			b.Cleanup(func() { _ = r.Close() }) // open until the last sub-benchmark ends
			src = r
		}
	}
	orasBin := regtest.Tool(b, "oras")
	ctx := context.Background()

	b.Run("existing-vs-oras", func(b *testing.B) { benchPushExisting(b, dir, orasBin) })

	b.Run("vs-oras", func(b *testing.B) {
		setup(b)
		stellaReg, orasReg := regtest.Start(b, regtest.Options{}), regtest.Start(b, regtest.Options{})
		var stellaTime, orasTime time.Duration
		for i := 0; i < b.N; i++ {
			start := time.Now()
			dst := mustRef(b, fmt.Sprintf("%s/bench/stella-%d:1.0.0", stellaReg.Host, i))
			rep, err := mirror.Push(ctx, src, []mirror.Artifact{{Descriptor: manifest}}, dst, mirror.Options{PlainHTTP: true})
			if err != nil {
				b.Fatal(err)
			}
			stellaTime += time.Since(start)
			if rep.BlobsSkipped != 0 {
				b.Fatalf("stella skipped %d blobs of a fresh repository", rep.BlobsSkipped)
			}

			start = time.Now()
			out, err := orasCopy(orasBin, path+"@"+manifest.Digest.String(), fmt.Sprintf("%s/bench/oras-%d:1.0.0", orasReg.Host, i))
			if err != nil {
				b.Fatalf("oras copy: %v\n%s", err, out)
			}
			orasTime += time.Since(start)
		}
		stellaMBps := total * float64(b.N) / 1e6 / stellaTime.Seconds()
		orasMBps := total * float64(b.N) / 1e6 / orasTime.Seconds()
		b.ReportMetric(stellaMBps, "stella-MB/s")
		b.ReportMetric(orasMBps, "oras-MB/s")
		b.ReportMetric(stellaMBps/orasMBps, "stella/oras-speed")
	})

	b.Run("one-layer-changed", func(b *testing.B) {
		setup(b)
		changedPath := filepath.Join(dir, "changed.stella.tar")
		changed := benchBundle(b, changedPath, layerSize, 1, 3)
		changedSrc := openBundle(b, changedPath)
		r := regtest.Start(b, regtest.Options{})
		var sent, seen float64
		var fullTime, deltaTime time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			repo := fmt.Sprintf("%s/bench/delta-%d", r.Host, i)
			start := time.Now()
			if _, err := mirror.Push(ctx, src, []mirror.Artifact{{Descriptor: manifest, Tag: "1.0.0"}}, mustRef(b, repo), mirror.Options{PlainHTTP: true}); err != nil {
				b.Fatal(err)
			}
			fullTime += time.Since(start)
			b.StartTimer()
			start = time.Now()
			rep, err := mirror.Push(ctx, changedSrc, []mirror.Artifact{{Descriptor: changed, Tag: "1.0.1"}}, mustRef(b, repo), mirror.Options{PlainHTTP: true})
			if err != nil {
				b.Fatal(err)
			}
			deltaTime += time.Since(start)
			sent += float64(rep.BytesCopied)
			seen += float64(rep.BytesCopied + rep.BytesSkipped)
		}
		b.ReportMetric(sent/seen, "sent/total-bytes")
		b.ReportMetric(deltaTime.Seconds()/fullTime.Seconds(), "time/full-push")
	})
}

func orasCopy(bin, from, to string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	home, err := os.MkdirTemp("", "oras-home-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	cmd := exec.CommandContext(ctx, bin, "copy", "--from-oci-layout", from, "--to-plain-http", to)
	cmd.Env = append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+home, "XDG_CONFIG_HOME="+home)
	return cmd.CombinedOutput()
}

// benchFiles is the number of files of the pack benchPushExisting pushes again (issue 13:
// a 1,000-file pack already in the registry).
const benchFiles = 1000

// benchFilesBundle writes a bundle file holding one pack of benchFiles random files of
// 1–8 KiB.
func benchFilesBundle(b *testing.B, path string) ocispec.Descriptor {
	b.Helper()
	ctx := context.Background()
	store := memory.New()
	push := func(mediaType string, data []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mediaType, data)
		if err := store.Push(ctx, d, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		return d
	}
	rng := rand.New(rand.NewChaCha8([32]byte{7}))
	var layers []ocispec.Descriptor
	for i := range benchFiles {
		data := make([]byte, 1<<10+rng.IntN(7<<10))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		l := push(artifact.MediaTypePackFile, data)
		l.Annotations = map[string]string{artifact.AnnotationTitle: fmt.Sprintf("files/f-%04d.bin", i)}
		layers = append(layers, l)
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifact.ArtifactTypePack,
		Config:       push(artifact.MediaTypePackConfig, []byte(`{"apiVersion":"stellaops.io/pack.v1","files":[],"name":"files","version":"1.0.0"}`)),
		Layers:       layers,
		Annotations:  map[string]string{artifact.AnnotationRef: "files:1.0.0", artifact.AnnotationCreated: testCreated},
	}
	data, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	md := push(ocispec.MediaTypeImageManifest, data)
	md.ArtifactType = artifact.ArtifactTypePack
	if _, err := bundle.WriteFile(ctx, path, store, []bundle.Entry{{Descriptor: md, Kind: artifact.KindPack, Ref: "files:1.0.0"}}, bundle.WriteOptions{}); err != nil {
		b.Fatal(err)
	}
	return md
}

// benchPushExisting pushes a 1,000-file pack the registry already has, again: stella
// (mirror.Push in process, by default and with CheckBlobs) against `oras copy
// --from-oci-layout` of the same bundle to the same repository (a process, as an
// operator runs it) and against oras-go's oras.Copy in process (the same work without a
// process start). Runs alternate, so the ratios are measured in the same conditions.
func benchPushExisting(b *testing.B, dir, orasBin string) {
	ctx := context.Background()
	path := filepath.Join(dir, "files.stella.tar")
	manifest := benchFilesBundle(b, path)
	src := openBundle(b, path)
	layout, err := oci.NewFromTar(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	r := regtest.Start(b, regtest.Options{})
	stellaRef := mustRef(b, r.Host+"/bench/files-stella:1.0.0")
	orasRef := r.Host + "/bench/files-oras:1.0.0"
	if _, err := mirror.Push(ctx, src, []mirror.Artifact{{Descriptor: manifest}}, stellaRef, mirror.Options{PlainHTTP: true}); err != nil {
		b.Fatal(err)
	}
	if out, err := orasCopy(orasBin, path+"@"+manifest.Digest.String(), orasRef); err != nil {
		b.Fatalf("oras copy: %v\n%s", err, out)
	}
	repo, err := remote.NewRepository(r.Host + "/bench/files-orasgo")
	if err != nil {
		b.Fatal(err)
	}
	repo.PlainHTTP = true
	orasGo := func() {
		if _, err := oras.Copy(ctx, layout, manifest.Digest.String(), repo, "1.0.0", oras.DefaultCopyOptions); err != nil {
			b.Fatal(err)
		}
	}
	orasGo()
	stella := func(check bool) time.Duration {
		start := time.Now()
		rep, err := mirror.Push(ctx, src, []mirror.Artifact{{Descriptor: manifest}}, stellaRef, mirror.Options{PlainHTTP: true, CheckBlobs: check})
		if err != nil {
			b.Fatal(err)
		}
		if rep.BlobsCopied != 0 || rep.BlobsSkipped != benchFiles+2 {
			b.Fatalf("push again copied %d, skipped %d blobs; want 0, %d", rep.BlobsCopied, rep.BlobsSkipped, benchFiles+2)
		}
		return time.Since(start)
	}
	var stellaTime, checkTime, orasTime, orasGoTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		stellaTime += stella(false)
		checkTime += stella(true)
		start := time.Now()
		if out, err := orasCopy(orasBin, path+"@"+manifest.Digest.String(), orasRef); err != nil {
			b.Fatalf("oras copy: %v\n%s", err, out)
		}
		orasTime += time.Since(start)
		start = time.Now()
		orasGo()
		orasGoTime += time.Since(start)
	}
	b.ReportMetric(stellaTime.Seconds()/orasTime.Seconds(), "stella/oras-copy")
	b.ReportMetric(stellaTime.Seconds()/orasGoTime.Seconds(), "stella/oras-go")
	b.ReportMetric(checkTime.Seconds()/orasTime.Seconds(), "check-blobs/oras-copy")
	b.ReportMetric(float64(stellaTime.Microseconds())/float64(b.N)/1000, "stella-ms")
	b.ReportMetric(float64(orasTime.Microseconds())/float64(b.N)/1000, "oras-copy-ms")
}

package cache_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
)

// The test binary doubles as a helper process that imports random graphs
// into a cache, so tests can run several processes on one cache and kill
// one mid-import.
const helperEnv = "STELLA_CACHE_TEST_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helperMain(spec))
	}
	if spec := os.Getenv(boundEnv); spec != "" {
		os.Exit(boundMain(spec))
	}
	os.Exit(m.Run())
}

// helperSpec is what a helper process imports.
type helperSpec struct {
	root       string
	seed       uint64
	prefix     string
	n, k, size int
}

func (h helperSpec) env() string {
	return fmt.Sprintf("%s|%d|%s|%d|%d|%d", h.root, h.seed, h.prefix, h.n, h.k, h.size)
}

func parseSpec(s string) (helperSpec, error) {
	f := strings.Split(s, "|")
	if len(f) != 6 {
		return helperSpec{}, fmt.Errorf("bad helper spec %q", s)
	}
	var h helperSpec
	var err error
	h.root, h.prefix = f[0], f[2]
	nums := []*int{&h.n, &h.k, &h.size}
	if h.seed, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return h, err
	}
	for i, p := range nums {
		if *p, err = strconv.Atoi(f[3+i]); err != nil {
			return h, err
		}
	}
	return h, nil
}

// helperMain builds the graphs, says "ready", imports them, says "done".
func helperMain(spec string) int {
	h, err := parseSpec(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	src := newSource()
	arts, err := genGraphs(src, h.seed, h.prefix, h.n, h.k, h.size)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := cache.Open(ctx, h.root, cache.Options{Holder: "cache test helper " + h.prefix})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	// Wait for the go-ahead, so that helpers started together import together.
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "no go-ahead:", err)
		return 1
	}
	if _, err := s.Import(ctx, src, arts, cache.ImportRecord{From: "helper " + h.prefix}, cache.ImportOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("done")
	return 0
}

// startHelper starts a helper process and waits until it says "ready";
// it imports once go is called.
func startHelper(t *testing.T, h helperSpec) (cmd *exec.Cmd, sc *bufio.Scanner, goAhead func()) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+h.env())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc = bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper %s did not get ready: %q", h.prefix, sc.Text())
	}
	return cmd, sc, func() {
		if _, err := in.Write([]byte("go\n")); err != nil {
			t.Errorf("helper %s: %v", h.prefix, err)
		}
	}
}

// expected regenerates the artifacts a helper imports: ref → digest.
func expected(t *testing.T, h helperSpec) (*source, []cache.Artifact, map[string]digest.Digest) {
	t.Helper()
	src := newSource()
	arts := randomGraphs(t, src, h.seed, h.prefix, h.n, h.k, h.size)
	want := map[string]digest.Digest{}
	for _, a := range arts {
		want[a.Ref] = a.Descriptor.Digest
	}
	return src, arts, want
}

func listed(t *testing.T, s *cache.Store) map[string]digest.Digest {
	t.Helper()
	list, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]digest.Digest{}
	for _, e := range list {
		got[e.Ref] = e.Descriptor.Digest
	}
	return got
}

func TestConcurrentProcesses(t *testing.T) {
	root := t.TempDir()
	specs := []helperSpec{
		{root: root, seed: 11, prefix: "p", n: 3, k: 3, size: 256 << 10},
		{root: root, seed: 12, prefix: "q", n: 3, k: 3, size: 256 << 10},
	}
	var cmds []*exec.Cmd
	var starts []func()
	for _, h := range specs {
		cmd, _, goAhead := startHelper(t, h)
		cmds = append(cmds, cmd)
		starts = append(starts, goAhead)
	}
	for _, goAhead := range starts {
		goAhead()
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %s: %v", specs[i].prefix, err)
		}
	}
	s := cachetest.OpenAt(t, root)
	got := listed(t, s)
	for _, h := range specs {
		_, _, want := expected(t, h)
		for ref, d := range want {
			if got[ref] != d {
				t.Errorf("ref %s = %s, want %s", ref, got[ref], d)
			}
		}
	}
	if len(got) != 6 {
		t.Errorf("listed %d refs, want 6", len(got))
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s1 := cachetest.OpenAt(t, root)
	s2, err := cache.Open(ctx, root, cache.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srcA, srcB := newSource(), newSource()
	artsA := randomGraphs(t, srcA, 1, "a", 3, 3, 128<<10)
	artsB := randomGraphs(t, srcB, 2, "b", 3, 3, 128<<10)
	type job struct {
		s    *cache.Store
		src  *source
		arts []cache.Artifact
	}
	jobs := []job{{s1, srcA, artsA}, {s2, srcB, artsB}, {s1, srcB, artsB}, {s2, srcA, artsA}}
	errs := make(chan error, len(jobs)+1)
	stop := make(chan struct{})
	gcDone := make(chan struct{})
	go func() { // gc keeps running meanwhile: it must never take a blob from an import
		defer close(gcDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s1.GC(ctx, cache.GCOptions{}); err != nil {
				errs <- fmt.Errorf("gc: %w", err)
				return
			}
			// Lock waits poll every 50ms with no queue: a gc retaken at
			// once, forever, would starve the importers.
			time.Sleep(100 * time.Millisecond)
		}
	}()
	done := make(chan struct{})
	for _, j := range jobs {
		go func() {
			_, err := j.s.Import(ctx, j.src, j.arts, cache.ImportRecord{From: "goroutine"}, cache.ImportOptions{})
			errs <- err
			done <- struct{}{}
		}()
	}
	for range jobs {
		<-done
	}
	close(stop)
	<-gcDone
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got := listed(t, s1)
	for _, a := range slices.Concat(artsA, artsB) {
		if got[a.Ref] != a.Descriptor.Digest {
			t.Errorf("ref %s = %s, want %s", a.Ref, got[a.Ref], a.Descriptor.Digest)
		}
	}
}

// TestCrashDuringImport kills helper processes at random points of a large
// import: the cache must stay consistent, list nothing half-imported, and
// accept the import again.
func TestCrashDuringImport(t *testing.T) {
	n, k, size := 4, 4, 4<<20 // 64 MiB per helper
	if testing.Short() || raceEnabled {
		n, k, size = 4, 4, 1<<20 // the race detector slows the helpers down 5-10 times
	}
	crashDuringImport(t, n, k, size, 4)
}

// TestCrashDuringImportManyFiles kills imports of one pack of 10,000 small
// files, whose blobs are made durable together: after each kill the index
// names no blob that is not there and whole.
func TestCrashDuringImportManyFiles(t *testing.T) {
	k := 10000
	if testing.Short() || raceEnabled {
		k = 2000
	}
	crashDuringImport(t, 1, k, 512, 1) // one kill: each import and verify of 10,000 files takes seconds
}

// TestCrashDuringImportManyPacks kills imports of 1,000 packs, recorded a
// batch at a time: after each kill every pack listed is whole.
func TestCrashDuringImportManyPacks(t *testing.T) {
	n := 1000
	if testing.Short() || raceEnabled {
		n = 300
	}
	crashDuringImport(t, n, 1, 256, 2)
}

// crashDuringImport runs one import of n packs of k layers of size bytes to
// the end, to time it, then kills as many others at random moments of the
// same length; after each kill the cache verifies and lists only whole
// artifacts, and every import then runs again to completion.
func crashDuringImport(t *testing.T, n, k, size, kills int) {
	ctx := context.Background()
	root := t.TempDir()
	spec := func(seed uint64) helperSpec {
		return helperSpec{root: root, seed: seed, prefix: fmt.Sprintf("crash%d", seed), n: n, k: k, size: size}
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	// A full run tells how long an import takes.
	cmd, _, goAhead := startHelper(t, spec(100))
	start := time.Now()
	goAhead()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("full helper run: %v", err)
	}
	full := time.Since(start)
	t.Logf("full import of %d packs of %d layers of %d bytes: %v", n, k, size, full)

	want := map[string]digest.Digest{}
	_, _, w := expected(t, spec(100))
	for r, d := range w {
		want[r] = d
	}
	var seeds []uint64
	for i := range kills {
		seeds = append(seeds, uint64(101+i))
	}
	for _, sd := range seeds {
		cmd, sc, goAhead := startHelper(t, spec(sd))
		goAhead()
		delay := time.Duration(rng.Int64N(int64(full)))
		time.Sleep(delay)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		finished := sc.Scan() && sc.Text() == "done"
		t.Logf("seed %d: killed after %v (finished before kill: %v)", sd, delay, finished)
		_, _, w := expected(t, spec(sd))
		for r, d := range w {
			want[r] = d
		}

		s, err := cache.Open(ctx, root, cache.Options{})
		if err != nil {
			t.Fatalf("open after kill: %v", err)
		}
		r, err := s.Verify(ctx, cache.VerifyOptions{})
		if err != nil {
			t.Fatalf("verify after kill: %v", err)
		}
		for _, p := range r.Problems {
			if p.Severity == cache.SeverityError {
				t.Errorf("after kill %d: %s %s (expected %q, actual %q)", sd, p.Object, p.Problem, p.Expected, p.Actual)
			}
		}
		now := listed(t, s)
		t.Logf("seed %d: %d refs listed", sd, len(now))
		for ref, d := range now {
			if want[ref] != d {
				t.Errorf("after kill %d: listed %s = %s, want %s", sd, ref, d, want[ref])
			}
			if _, err := s.Resolve(ctx, ref); err != nil {
				t.Errorf("after kill %d: resolve %s: %v", sd, ref, err)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}

	// Every import runs again to completion, resuming what is there.
	s := cachetest.OpenAt(t, root)
	for _, sd := range append([]uint64{100}, seeds...) {
		src, arts, _ := expected(t, spec(sd))
		res, err := s.Import(ctx, src, arts, cache.ImportRecord{From: "re-import"}, cache.ImportOptions{})
		if err != nil {
			t.Fatalf("re-import %d: %v", sd, err)
		}
		for _, a := range res.Artifacts {
			if a.Status == cache.StatusFailed {
				t.Errorf("re-import %s: %v", a.Artifact.Ref, a.Err)
			}
		}
	}
	got := listed(t, s)
	if len(got) != len(want) {
		t.Errorf("listed %d refs, want %d", len(got), len(want))
	}
	for ref, d := range want {
		if got[ref] != d {
			t.Errorf("ref %s = %s, want %s", ref, got[ref], d)
		}
	}
	// gc takes the leftovers of the killed processes; the cleanup then
	// verifies a cache with no problem at all.
	gc, err := s.GC(ctx, cache.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc after crashes: %+v", gc)
}

// boundEnv makes the test binary a helper process that imports a pack
// bound to its two signatures (WithPrevious) and, at the stopAt-th progress
// event, says "stop" and waits to be killed.
const boundEnv = "STELLA_CACHE_TEST_BOUND"

// boundGraph is a pack with two signatures, the signatures bound to it.
func boundGraph(src *source) ([]cache.Artifact, error) {
	arts, err := genGraphs(src, 7, "bound", 1, 2, 64<<10)
	if err != nil {
		return nil, err
	}
	pk := arts[0].Descriptor
	for i := range 2 {
		body := []byte(fmt.Sprintf(`{"signature":%d}`, i))
		ld := content.NewDescriptorFromBytes(typeLayer, body)
		if err := src.Push(context.Background(), ld, bytes.NewReader(body)); err != nil {
			return nil, err
		}
		sig, err := oras.PackManifest(context.Background(), src, oras.PackManifestVersion1_1, typeSignature, oras.PackManifestOptions{
			Subject: &pk, Layers: []ocispec.Descriptor{ld},
			ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: created},
		})
		if err != nil {
			return nil, err
		}
		arts = append(arts, cache.Artifact{Descriptor: sig, Kind: "signature", WithPrevious: true})
	}
	return arts, nil
}

func boundMain(spec string) int {
	root, n, _ := strings.Cut(spec, "|")
	stopAt, err := strconv.Atoi(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	src := newSource()
	arts, err := boundGraph(src)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := cache.Open(ctx, root, cache.Options{Holder: "cache test bound helper"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	events := 0
	_, err = s.Import(ctx, src, arts, cache.ImportRecord{From: "bound helper"}, cache.ImportOptions{
		Concurrency: 1,
		Progress: func(p cache.Progress) {
			if events++; events == stopAt {
				fmt.Printf("stop at %d\n", p.Event)
				select {} // wait for the kill
			}
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("done")
	return 0
}

// TestCrashBetweenPackAndSignatures kills an import of a pack bound to its
// signatures at every progress event in turn (from the pack's start to
// the signatures' end): after restart the cache holds the pack with both
// signatures, or none of the three, never the pack alone.
func TestCrashBetweenPackAndSignatures(t *testing.T) {
	ctx := context.Background()
	src := newSource()
	arts, err := boundGraph(src)
	if err != nil {
		t.Fatal(err)
	}
	events := 0
	if _, err := cachetest.Open(t).Import(ctx, src, arts, cache.ImportRecord{From: "count"}, cache.ImportOptions{
		Concurrency: 1, Progress: func(cache.Progress) { events++ },
	}); err != nil {
		t.Fatal(err)
	}
	pk := arts[0]
	sawBoth, sawNone := false, false
	for stopAt := 1; stopAt <= events; stopAt++ {
		root := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d", boundEnv, root, stopAt))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), "stop at ") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("event %d: helper did not stop: %q", stopAt, sc.Text())
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()

		s, err := cache.Open(ctx, root, cache.Options{})
		if err != nil {
			t.Fatalf("open after kill: %v", err)
		}
		r, err := s.Verify(ctx, cache.VerifyOptions{})
		if err != nil {
			t.Fatalf("verify after kill: %v", err)
		}
		for _, p := range r.Problems {
			if p.Severity == cache.SeverityError { // a leftover temp file is only a warning
				t.Errorf("killed at event %d: %s %s (expected %q, actual %q)", stopAt, p.Object, p.Problem, p.Expected, p.Actual)
			}
		}
		_, rerr := s.Resolve(ctx, pk.Ref)
		sigs, err := s.Referrers(ctx, pk.Descriptor.Digest, "")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case rerr == nil && len(sigs) == 2:
			sawBoth = true
		case errors.Is(rerr, cache.ErrNotFound) && len(sigs) == 0:
			sawNone = true
		default:
			t.Errorf("killed at event %d (%s): pack resolves: %v, %d of 2 signatures recorded", stopAt, sc.Text(), rerr, len(sigs))
		}
		if list, err := s.List(ctx, ""); err != nil || (len(list) != 0 && len(list) != 3) {
			t.Errorf("killed at event %d: listed %d artifacts (%v), want 0 or 3", stopAt, len(list), err)
		}
	}
	if !sawNone || !sawBoth {
		t.Errorf("the kills must land both before (none) and after (all) the transaction: none %v, all %v", sawNone, sawBoth)
	}
}

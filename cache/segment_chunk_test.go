package cache

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestSegmentSealWaitsForChunkWrites: a seal while an add is still
// writing the buffer it filled waits for that write, and the segment
// then holds every blob at its entry's place.
func TestSegmentSealWaitsForChunkWrites(t *testing.T) {
	w := newSegmentWriter(t.TempDir())
	entered, release := make(chan struct{}, 1), make(chan struct{})
	chunkWriting = func() { entered <- struct{}{}; <-release }
	defer func() { chunkWriting = nil }()
	// 16 blobs of 64 KiB fill one buffer; the 17th hands it to be written.
	var blobs [][]byte
	var ds []digest.Digest
	for i := range 17 {
		b := bytes.Repeat([]byte{byte(i + 1)}, segmentBlobMax)
		blobs, ds = append(blobs, b), append(ds, digest.FromBytes(b))
	}
	added := make(chan error, 1)
	go func() {
		for i, b := range blobs {
			if err := w.add(ds[i], b); err != nil {
				added <- err
				return
			}
		}
		added <- nil
	}()
	<-entered
	sealed := make(chan error, 1)
	var seg pendingSegment
	go func() {
		var err error
		seg, err = w.seal(ds)
		sealed <- err
	}()
	select {
	case err := <-sealed:
		t.Fatalf("seal returned (%v) while a chunk was still being written", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if err := <-sealed; err != nil {
		t.Fatal(err)
	}
	f, err := os.ReadFile(seg.tmp)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range blobs {
		off := i * segmentBlobMax
		if off+len(b) > len(f) || !bytes.Equal(f[off:off+len(b)], b) {
			t.Fatalf("blob %d is not at its place in the segment", i)
		}
	}
}

// TestSegmentChunkWriteFailure: a chunk whose write fails fails the add
// that wrote it, every add after it, the seal and the reads, even when
// later writes would succeed: the segment has a hole.
func TestSegmentChunkWriteFailure(t *testing.T) {
	w := newSegmentWriter(t.TempDir())
	var orig *os.File
	chunkWriting = func() {
		if orig == nil {
			orig = w.f
			ro, err := os.Open(orig.Name())
			if err != nil {
				t.Error(err)
				return
			}
			w.f = ro // this chunk's WriteAt fails (EBADF: opened read-only)
		}
	}
	defer func() { chunkWriting = nil }()
	var ds []digest.Digest
	failed := -1
	for i := range 20 {
		b := bytes.Repeat([]byte{byte(i + 1)}, segmentBlobMax)
		d := digest.FromBytes(b)
		ds = append(ds, d)
		err := w.add(d, b)
		switch {
		case err != nil && failed < 0:
			failed = i
		case err == nil && failed >= 0:
			t.Fatalf("add %d succeeded after the chunk of add %d was lost", i, failed)
		}
	}
	if failed != 16 {
		t.Fatalf("add %d failed first, want 16 (the one that wrote the first chunk)", failed)
	}
	_ = w.f.Close()
	w.f = orig // later writes would succeed
	if _, err := w.seal(ds[:failed]); err == nil {
		t.Fatal("seal succeeded over a chunk that was never written")
	}
	if _, err := w.read(ds[0]); err == nil {
		t.Fatal("read succeeded over a chunk that was never written")
	}
}

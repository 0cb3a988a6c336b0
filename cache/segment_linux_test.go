package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/cache"
)

// A store that read blobs from a segment another process's gc then
// removed drops it: the next read comes from the new segment, and once
// collected no descriptor of the removed file stays open.
func TestSegmentDroppedAfterGC(t *testing.T) {
	ctx := context.Background()
	root, s, g := openTwo(t, "stella cache gc")
	kept := smallFiles("kept", 40)
	sharedSegment(t, s, newSource(), kept)
	d := content.NewDescriptorFromBytes(typeLayer, []byte(kept[0]))
	fetchAll(t, s, d) // s opens the segment
	if res, err := g.GC(ctx, cache.GCOptions{}); err != nil || res.Blobs != 41 {
		t.Fatalf("gc: %+v %v", res, err)
	}
	if got := fetchAll(t, s, d); string(got) != kept[0] {
		t.Fatalf("reads %q after gc", got)
	}
	runtime.GC()
	runtime.GC()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, filepath.Join(root, "segments")) && strings.HasSuffix(target, "(deleted)") {
			t.Errorf("descriptor %s still open on a segment gc removed: %s", fd.Name(), target)
		}
	}
}

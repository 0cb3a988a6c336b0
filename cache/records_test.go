package cache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
)

func TestRecords(t *testing.T) {
	ctx := context.Background()
	s := cachetest.Open(t)
	runs := s.Records("run")

	// A bucket never written reads as empty.
	err := runs.View(ctx, func(tx cache.RecordTx) error {
		if v := tx.Get("runs", []byte("a")); v != nil {
			t.Errorf("get from an empty namespace: %q", v)
		}
		if k, _ := tx.Last("runs"); k != nil {
			t.Errorf("last of an empty bucket: %q", k)
		}
		n := 0
		if err := tx.ForEach("runs", nil, func(k, v []byte) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("foreach of an empty bucket: %d, %v", n, err)
		}
		// A View cannot write.
		if err := tx.Put("runs", []byte("a"), []byte("1")); err == nil {
			t.Error("put in a view succeeded")
		}
		if _, err := tx.NextSequence("runs"); err == nil {
			t.Error("next sequence in a view succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	err = runs.Update(ctx, func(tx cache.RecordTx) error {
		for _, k := range []string{"t1/a", "t1/b", "t2/a"} {
			seq, err := tx.NextSequence("runs")
			if err != nil {
				return err
			}
			if err := tx.Put("runs", []byte(k), []byte(fmt.Sprint(seq))); err != nil {
				return err
			}
		}
		return tx.Put("steps", []byte("x"), []byte("y"))
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failed Update changes nothing.
	errStop := errors.New("stop")
	if err := runs.Update(ctx, func(tx cache.RecordTx) error {
		if err := tx.Delete("runs", []byte("t1/a")); err != nil {
			return err
		}
		return errStop
	}); !errors.Is(err, errStop) {
		t.Fatalf("update = %v, want errStop", err)
	}

	err = runs.View(ctx, func(tx cache.RecordTx) error {
		var got []string
		if err := tx.ForEach("runs", []byte("t1/"), func(k, v []byte) error {
			got = append(got, string(k)+"="+string(v))
			return nil
		}); err != nil {
			return err
		}
		if diff := cmp.Diff([]string{"t1/a=1", "t1/b=2"}, got); diff != "" {
			t.Errorf("prefix scan (-want +got):\n%s", diff)
		}
		if k, v := tx.Last("runs"); string(k) != "t2/a" || string(v) != "3" {
			t.Errorf("last = %q %q", k, v)
		}
		if err := tx.ForEach("runs", nil, func(k, v []byte) error { return errStop }); !errors.Is(err, errStop) {
			t.Errorf("foreach stops at fn's error: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Namespaces are apart, and stored as "<ns>.<bucket>" top-level buckets.
	if err := s.Records("other").View(ctx, func(tx cache.RecordTx) error {
		if v := tx.Get("runs", []byte("t1/a")); v != nil {
			t.Errorf("another namespace sees %q", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := cache.Update(ctx, s, func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte("run.steps")); b == nil || string(b.Get([]byte("x"))) != "y" {
			t.Error("bucket steps of namespace run is not the index bucket run.steps")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	for _, ns := range []string{"cache", "", "Run", "a.b"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("namespace %q accepted", ns)
				}
			}()
			s.Records(ns)
		}()
	}
}

package cache

import (
	"context"

	"go.etcd.io/bbolt"
)

// releaseEvery is how many bytes of records a scan reads between two
// releases of the index's mapped pages. A fault on the mapping maps the
// faulted page and up to 15 cached neighbours (the kernel's fault-around,
// 64 KiB by default), and leaf pages are about half full, so a window of
// 128 KiB of records keeps at most about 4 MiB of the index resident.
const releaseEvery = 128 << 10

// recordOverhead is what a record costs in a leaf page beside its key and
// value (bbolt's element header), counted so that many small records
// release as often as their pages fill.
const recordOverhead = 16

// scan is view for a long read-only pass over many records: fn reads
// through sc, which drops the pages of index.db read so far from the
// process's resident set every releaseEvery bytes of records. The index
// is mapped, and a page once read stays in the resident set until the
// transaction ends: a scan of every record of a cache of 30,000 packs
// would otherwise hold the whole file (131 MiB) resident, and even a
// scan of one bucket most of it (its leaf pages are spread over the file,
// and each fault maps cached neighbours too).
func (s *Store) scan(ctx context.Context, fn func(tx *bbolt.Tx, sc *scanner) error) error {
	return s.view(ctx, func(tx *bbolt.Tx) error {
		sc := &scanner{tx: tx, scanned: s.scanned}
		err := fn(tx, sc)
		if s.scanned != nil {
			s.scanned(tx)
		}
		return err
	})
}

// scanner counts what a scan reads and releases the mapped pages of its
// transaction as it goes (releaseMapped). Keys and values it passes on
// are valid, as bbolt's are, until the transaction ends.
type scanner struct {
	tx      *bbolt.Tx
	read    int
	scanned func(tx *bbolt.Tx) // Store.scanned
}

// forEach is b.ForEach, counted.
func (sc *scanner) forEach(b *bbolt.Bucket, fn func(k, v []byte) error) error {
	return b.ForEach(func(k, v []byte) error {
		sc.count(len(k) + len(v))
		return fn(k, v)
	})
}

// get is b.Get, counted.
func (sc *scanner) get(b *bbolt.Bucket, key []byte) []byte {
	v := b.Get(key)
	sc.count(len(key) + len(v))
	return v
}

func (sc *scanner) count(n int) {
	sc.read += n + recordOverhead
	if sc.read < releaseEvery {
		return
	}
	if sc.scanned != nil {
		sc.scanned(sc.tx)
	}
	releaseMapped(sc.tx)
	sc.read = 0
}

package cache

import (
	"bytes"
	"context"
	"fmt"
	"regexp"

	"go.etcd.io/bbolt"
)

// Records is a namespace of keyed records that another package keeps in
// the cache index (approve keeps its approvals in "approve", the runner its
// runs in "run"). A bucket name of the namespace is stored as the
// top-level index bucket "<namespace>.<name>"; the namespace "cache" is
// this package's own. Transactions have the index's guarantees: View sees
// one consistent snapshot; Update is atomic, durable (fsync) when it
// returns nil, and waits for (at most Options.LockTimeout, then ErrLocked)
// and excludes every other writer, in this process or another. Keep
// transactions short and free of long I/O: other processes wait on them.
type Records struct {
	s  *Store
	ns string
}

// namespaceRE is the syntax of a namespace and of a bucket name.
var namespaceRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)

// Records returns the record namespace ns (lowercase letters, digits and
// '-', starting with a letter; not "cache"). It panics on an invalid
// namespace: namespaces are constants of the calling package.
func (s *Store) Records(ns string) *Records {
	if !namespaceRE.MatchString(ns) || ns == "cache" {
		panic(fmt.Sprintf("cache: invalid record namespace %q", ns))
	}
	return &Records{s: s, ns: ns}
}

// RecordTx is a transaction over the buckets of one namespace. Keys and
// values passed in are copied; slices returned are valid only until the
// transaction ends and must not be modified. In a View, Put, Delete and
// NextSequence fail. A bucket that was never written reads as empty.
type RecordTx interface {
	// Get returns the value of key in bucket, or nil when there is none.
	Get(bucket string, key []byte) []byte
	// Put sets key in bucket to value, creating the bucket if needed.
	Put(bucket string, key, value []byte) error
	// Delete removes key from bucket; a missing key is not an error.
	Delete(bucket string, key []byte) error
	// ForEach calls fn for every key of bucket that starts with prefix
	// (nil for all), in key order, and stops at fn's first error, which
	// it returns. fn must not write to bucket.
	ForEach(bucket string, prefix []byte, fn func(key, value []byte) error) error
	// Last returns the last key of bucket and its value; nil when empty.
	Last(bucket string) (key, value []byte)
	// NextSequence returns the bucket's next sequence number (1, 2, ...),
	// creating the bucket if needed.
	NextSequence(bucket string) (uint64, error)
}

// View runs fn in a read-only transaction of the namespace.
func (r *Records) View(ctx context.Context, fn func(tx RecordTx) error) error {
	return r.s.view(ctx, func(tx *bbolt.Tx) error { return fn(&recordTx{tx: tx, ns: r.ns}) })
}

// Update runs fn in a read-write transaction of the namespace, committed
// (durably) when fn returns nil and rolled back otherwise.
func (r *Records) Update(ctx context.Context, fn func(tx RecordTx) error) error {
	return r.s.update(ctx, func(tx *bbolt.Tx) error { return fn(&recordTx{tx: tx, ns: r.ns}) })
}

type recordTx struct {
	tx *bbolt.Tx
	ns string
}

func (t *recordTx) name(bucket string) []byte {
	if !namespaceRE.MatchString(bucket) {
		panic(fmt.Sprintf("cache: invalid record bucket %q", bucket))
	}
	return []byte(t.ns + "." + bucket)
}

func (t *recordTx) bucket(bucket string) *bbolt.Bucket { return t.tx.Bucket(t.name(bucket)) }

func (t *recordTx) create(bucket string) (*bbolt.Bucket, error) {
	if !t.tx.Writable() {
		return nil, fmt.Errorf("records %s.%s: write in a read-only transaction", t.ns, bucket)
	}
	return t.tx.CreateBucketIfNotExists(t.name(bucket))
}

func (t *recordTx) Get(bucket string, key []byte) []byte {
	if b := t.bucket(bucket); b != nil {
		return b.Get(key)
	}
	return nil
}

func (t *recordTx) Put(bucket string, key, value []byte) error {
	b, err := t.create(bucket)
	if err != nil {
		return err
	}
	return b.Put(bytes.Clone(key), bytes.Clone(value))
}

func (t *recordTx) Delete(bucket string, key []byte) error {
	if !t.tx.Writable() {
		return fmt.Errorf("records %s.%s: write in a read-only transaction", t.ns, bucket)
	}
	if b := t.bucket(bucket); b != nil {
		return b.Delete(key)
	}
	return nil
}

func (t *recordTx) ForEach(bucket string, prefix []byte, fn func(key, value []byte) error) error {
	b := t.bucket(bucket)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func (t *recordTx) Last(bucket string) ([]byte, []byte) {
	if b := t.bucket(bucket); b != nil {
		return b.Cursor().Last()
	}
	return nil, nil
}

func (t *recordTx) NextSequence(bucket string) (uint64, error) {
	b, err := t.create(bucket)
	if err != nil {
		return 0, err
	}
	return b.NextSequence()
}

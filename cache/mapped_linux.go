package cache

import (
	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// releaseMapped drops from this process's resident set the pages of
// index.db that tx's mapping has in its page tables, with
// madvise(MADV_DONTNEED). bbolt maps the file read-only and MAP_SHARED:
// for such a mapping the advice changes no data — a page touched again
// faults back in from the page cache, with the file's content — it only
// unmaps, so what tx and the slices it returned read stays valid. It is
// advice: an error leaves the pages mapped and is not one of the scan.
func releaseMapped(tx *bbolt.Tx) {
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, tx.DB().Info().Data, uintptr(tx.Size()), unix.MADV_DONTNEED)
}

package pack

import (
	"io/fs"
	"syscall"
	"time"
)

// changeTime is a file's status change time (ctime), which any write,
// truncation or change of its times moves, and which no user can set.
func changeTime(fi fs.FileInfo) (time.Time, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(st.Ctim.Sec, st.Ctim.Nsec), true
}

package process

import "golang.org/x/sys/unix"

// growPipe asks for a pipe of size bytes; a refusal (beyond the system's
// pipe-max-size, or the user's pipe pages spent) leaves the pipe as it is.
func growPipe(fd uintptr, size int) {
	if cur, err := unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0); err == nil && cur >= size {
		return
	}
	_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size)
}

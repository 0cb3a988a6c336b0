package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The host's file system is read-only for a step: the helper makes every
// mount of its mount namespace read-only before it mounts the private
// tmpfs and binds the step's own folders back, then makes each bind-back
// writable again. Device nodes (/dev/null, /dev/zero, /dev/tty, ...) stay
// usable on a read-only mount: opening a device for writing does not write
// to the file system that holds its node.

// readonlyHost makes every mount of the mount namespace read-only. It only
// adds a restriction, which a user namespace may do to mounts it did not
// make (locked ones too). Where mount_setattr is missing (Linux before
// 5.12), or when remount says so, each mount of /proc/self/mountinfo is
// remounted read-only instead, keeping its locked flags (a mount point the
// helper cannot reach is left: the step cannot reach it either).
func readonlyHost(remount bool) error {
	if !remount {
		err := unix.MountSetattr(-1, "/", unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
		if !errors.Is(err, unix.ENOSYS) {
			return err
		}
	}
	points, err := mountPoints()
	if err != nil {
		return err
	}
	for _, p := range points {
		err := remountFlags(p, unix.MS_RDONLY)
		var st unix.Stat_t
		if err != nil && unix.Stat(p, &st) != nil {
			// Out of the helper's reach (a folder of another user on
			// the way, or a mount point gone): out of the step's, which
			// has less.
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// writable makes the mount at path (a bind-back, on a read-only mount
// since readonlyHost) writable again, and only that mount.
func writable(path string, remount bool) error {
	if !remount {
		err := unix.MountSetattr(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY})
		if !errors.Is(err, unix.ENOSYS) {
			return err
		}
	}
	return remountFlags(path, 0)
}

// remountFlags remounts the mount at path (MS_REMOUNT|MS_BIND) with the
// read-only flag rdonly (0 or MS_RDONLY) and the other flags it has, which
// a user namespace may not change on a mount it did not make.
func remountFlags(path string, rdonly uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return err
	}
	const kept = unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC | unix.ST_NOATIME | unix.ST_NODIRATIME | unix.ST_RELATIME
	// The ST_ flags have the values of the MS_ ones.
	flags := uintptr(st.Flags&kept) | unix.MS_REMOUNT | unix.MS_BIND | rdonly
	if st.Flags&(unix.ST_NOATIME|unix.ST_RELATIME) == 0 {
		flags |= unix.MS_STRICTATIME
	}
	return unix.Mount("", path, "", flags, "")
}

// mountPoints are the mount points of the calling thread's mount
// namespace (/proc/thread-self/mountinfo: a server request's thread has
// one of its own), parents before their children.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			return nil, fmt.Errorf("/proc/thread-self/mountinfo: unexpected line %q", sc.Text())
		}
		p := unescapeMountinfo(fields[4])
		if !seen[p] {
			seen[p] = true
			points = append(points, p)
		}
	}
	return points, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a
// mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

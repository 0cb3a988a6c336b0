package sandbox

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"stellaops.io/stella/pack"
	"stellaops.io/stella/run"
)

// Controllers the limits need.
const (
	ctrlMemory = "memory"
	ctrlPids   = "pids"
	ctrlCPU    = "cpu"
)

// hierarchies is where this process's cgroups are: for cgroup v1, each
// controller's folder for this process; for v2, the unified folder.
type hierarchies struct {
	v1      map[string]string // controller → this process's folder in its hierarchy
	v2      string            // this process's folder in the unified hierarchy ("" if none)
	v2Mount string
}

var (
	hierOnce sync.Once
	hier     hierarchies
)

func cgroupHierarchies() hierarchies {
	hierOnce.Do(func() { hier = readHierarchies() })
	return hier
}

// readHierarchies reads /proc/self/cgroup and /proc/self/mountinfo.
func readHierarchies() hierarchies {
	h := hierarchies{v1: map[string]string{}}
	own := map[string]string{} // controller ("" for v2) → path
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			if parts[0] == "0" && parts[1] == "" {
				own[""] = parts[2]
				continue
			}
			for _, c := range strings.Split(parts[1], ",") {
				own[c] = parts[2]
			}
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return h
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		root, mnt, fstype, super := unescape(fields[3]), unescape(fields[4]), fields[sep+1], fields[sep+3]
		switch fstype {
		case "cgroup2":
			if p, ok := own[""]; ok && h.v2 == "" {
				if rel, ok := within(p, root); ok {
					h.v2, h.v2Mount = filepath.Join(mnt, rel), mnt
				}
			}
		case "cgroup":
			for _, opt := range strings.Split(super, ",") {
				if opt != ctrlMemory && opt != ctrlPids && opt != ctrlCPU {
					continue
				}
				p, ok := own[opt]
				if !ok || h.v1[opt] != "" {
					continue
				}
				if rel, ok := within(p, root); ok {
					h.v1[opt] = filepath.Join(mnt, rel)
				}
			}
		}
	}
	return h
}

// within is p relative to root, when p is root or under it.
func within(p, root string) (string, bool) {
	if root == "/" {
		return p, true
	}
	if p == root {
		return "/", true
	}
	if strings.HasPrefix(p, root+"/") {
		return strings.TrimPrefix(p, root), true
	}
	return "", false
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
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

// cgroup is one attempt's cgroup: one folder in the unified hierarchy, or
// one per v1 controller.
type cgroup struct {
	v2  string
	v1  map[string]string // controller → folder
	all []string          // every folder created
}

// cgroupPrefix names the cgroups of an attempt, so Reap finds them.
func cgroupPrefix(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "stella-" + hex.EncodeToString(sum[:8])
}

// newCgroup makes a cgroup with the controllers wanted, in v2 when the
// unified hierarchy offers them all, else in v1 per controller where the
// runner may create one. Controllers it could not get are simply absent
// (the caller falls back to rlimits); nil when there is none.
func newCgroup(token string, want []string) *cgroup {
	if len(want) == 0 {
		return nil
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := cgroupPrefix(token) + "-" + hex.EncodeToString(rnd[:])
	h := cgroupHierarchies()
	if dir := v2Parent(h, want); dir != "" {
		p := filepath.Join(dir, name)
		if os.Mkdir(p, 0o755) == nil {
			return &cgroup{v2: p, all: []string{p}}
		}
	}
	cg := &cgroup{v1: map[string]string{}}
	for _, c := range want {
		parent := h.v1[c]
		if parent == "" {
			continue
		}
		p := filepath.Join(parent, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			continue
		}
		cg.v1[c] = p
		cg.all = append(cg.all, p)
	}
	if len(cg.all) == 0 {
		return nil
	}
	return cg
}

// v2Parent is the nearest folder, from this process's cgroup up to the
// hierarchy's root, whose children get every controller wanted (its
// cgroup.subtree_control lists them); "" when there is none.
func v2Parent(h hierarchies, want []string) string {
	if h.v2 == "" {
		return ""
	}
	for dir := h.v2; ; dir = filepath.Dir(dir) {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control")); err == nil {
			have := strings.Fields(string(b))
			ok := true
			for _, c := range want {
				ok = ok && contains(have, c)
			}
			if ok {
				return dir
			}
		}
		if dir == h.v2Mount || dir == "/" || !strings.HasPrefix(dir, h.v2Mount) {
			return ""
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// has reports whether the cgroup has controller c, and in which version.
func (cg *cgroup) has(c string) (string, bool) {
	if cg == nil {
		return "", false
	}
	if cg.v2 != "" {
		return run.EnforcedCgroupV2, true
	}
	_, ok := cg.v1[c]
	return run.EnforcedCgroupV1, ok
}

func (cg *cgroup) dir(c string) string {
	if cg.v2 != "" {
		return cg.v2
	}
	return cg.v1[c]
}

func writeFile(path, value string) error {
	// cgroup files take one write of the whole value.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// setLimits writes the limits the cgroup has a controller for and returns
// how each was enforced (records of the others are left to the caller).
func (cg *cgroup) setLimits(l pack.Limits) (map[string]run.LimitRecord, error) {
	recs := map[string]run.LimitRecord{}
	set := func(c, name, value, file, content, note string) error {
		p := filepath.Join(cg.dir(c), file)
		if err := writeFile(p, content); err != nil {
			return fmt.Errorf("setting %s=%s in %s: %w", name, value, p, err)
		}
		how, _ := cg.has(c)
		recs[name] = run.LimitRecord{Name: name, Value: value, Enforced: how, Note: note}
		return nil
	}
	if _, ok := cg.has(ctrlMemory); ok && l.MemoryMiB > 0 {
		bytes := strconv.FormatInt(int64(l.MemoryMiB)<<20, 10)
		v := strconv.Itoa(l.MemoryMiB)
		if cg.v2 != "" {
			if err := set(ctrlMemory, "memoryMiB", v, "memory.max", bytes, "memory.max; memory.swap.max 0"); err != nil {
				return nil, err
			}
			if _, err := os.Stat(filepath.Join(cg.v2, "memory.swap.max")); err == nil {
				if err := writeFile(filepath.Join(cg.v2, "memory.swap.max"), "0"); err != nil {
					return nil, fmt.Errorf("setting memoryMiB=%s (no swap) in %s: %w", v, cg.v2, err)
				}
			}
		} else {
			note := "memory.limit_in_bytes"
			if err := set(ctrlMemory, "memoryMiB", v, "memory.limit_in_bytes", bytes, note); err != nil {
				return nil, err
			}
			memsw := filepath.Join(cg.v1[ctrlMemory], "memory.memsw.limit_in_bytes")
			if _, err := os.Stat(memsw); err == nil {
				if err := writeFile(memsw, bytes); err != nil {
					return nil, fmt.Errorf("setting memoryMiB=%s (with swap) in %s: %w", v, memsw, err)
				}
				r := recs["memoryMiB"]
				r.Note = "memory.limit_in_bytes and memory.memsw.limit_in_bytes (no swap beyond it)"
				recs["memoryMiB"] = r
			}
		}
	}
	if _, ok := cg.has(ctrlPids); ok && l.Pids > 0 {
		v := strconv.Itoa(l.Pids)
		if err := set(ctrlPids, "pids", v, "pids.max", v, "pids.max (processes and threads of the step)"); err != nil {
			return nil, err
		}
	}
	if _, ok := cg.has(ctrlCPU); ok && l.CPU > 0 {
		const period = 100000
		quota := int64(l.CPU * period)
		if quota < 1000 {
			quota = 1000
		}
		v := strconv.FormatFloat(l.CPU, 'g', -1, 64)
		if cg.v2 != "" {
			if err := set(ctrlCPU, "cpu", v, "cpu.max", fmt.Sprintf("%d %d", quota, period), "cpu.max"); err != nil {
				return nil, err
			}
		} else {
			if err := set(ctrlCPU, "cpu", v, "cpu.cfs_period_us", strconv.Itoa(period), "cpu.cfs_quota_us/cpu.cfs_period_us"); err != nil {
				return nil, err
			}
			if err := writeFile(filepath.Join(cg.v1[ctrlCPU], "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10)); err != nil {
				return nil, fmt.Errorf("setting cpu=%s in %s: %w", v, cg.v1[ctrlCPU], err)
			}
		}
	}
	return recs, nil
}

// place moves process pid into the cgroup.
func (cg *cgroup) place(pid int) error {
	for _, d := range cg.all {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("placing the step in cgroup %s: %w", d, err)
		}
	}
	return nil
}

// hit names the limit the cgroup's counters say was reached: memoryMiB
// when its OOM killer killed a process, pids when a fork failed.
func (cg *cgroup) hit() string {
	if cg == nil {
		return ""
	}
	if _, ok := cg.has(ctrlMemory); ok {
		file := "memory.oom_control"
		if cg.v2 != "" {
			file = "memory.events"
		}
		if counter(filepath.Join(cg.dir(ctrlMemory), file), "oom_kill") > 0 {
			return "memoryMiB"
		}
	}
	if _, ok := cg.has(ctrlPids); ok {
		if counter(filepath.Join(cg.dir(ctrlPids), "pids.events"), "max") > 0 {
			return "pids"
		}
	}
	return ""
}

// counter reads "name N" from a cgroup's flat-keyed file.
func counter(path, name string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(" "))
		if ok && string(k) == name {
			n, _ := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n
		}
	}
	return 0
}

// remove kills every process left in the cgroup and removes it.
func (cg *cgroup) remove() error {
	if cg == nil {
		return nil
	}
	var errs []error
	for _, d := range cg.all {
		errs = append(errs, removeCgroup(d))
	}
	return errors.Join(errs...)
}

func removeCgroup(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err == nil {
		_ = writeFile(filepath.Join(dir, "cgroup.kill"), "1")
	}
	for round := 0; ; round++ {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		pids := strings.Fields(string(b))
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		err = syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if round >= 200 {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reapCgroups removes the cgroups of an attempt (by its token) that a dead
// runner left, with their processes.
func reapCgroups(token string) error {
	prefix := cgroupPrefix(token) + "-"
	h := cgroupHierarchies()
	parents := []string{}
	for _, d := range h.v1 {
		parents = append(parents, d)
	}
	for dir := h.v2; dir != "" && strings.HasPrefix(dir, h.v2Mount); dir = filepath.Dir(dir) {
		parents = append(parents, dir)
		if dir == h.v2Mount {
			break
		}
	}
	var errs []error
	for _, p := range parents {
		entries, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				errs = append(errs, removeCgroup(filepath.Join(p, e.Name())))
			}
		}
	}
	return errors.Join(errs...)
}

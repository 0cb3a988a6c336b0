package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// privateDirs are covered by an empty private tmpfs in every sandbox (when
// they are real folders, not symlinks), so a step reaches no host service
// through a Unix socket under them, and leaves nothing behind in them.
var privateDirs = []struct{ path, mode string }{
	{"/tmp", "1777"}, {"/var/tmp", "1777"}, {"/dev/shm", "1777"}, {"/run", "0755"}, {"/var/run", "0755"},
}

// Kinds of mountOp.
const (
	opTmpfs    = "tmpfs"    // cover Path with an empty tmpfs
	opBind     = "bind"     // bind Binds[Src] back at Path
	opReadonly = "readonly" // make the tmpfs at Path read-only
)

// mountOp is one step of the helper's mount setup, in order.
type mountOp struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
	Mode string `json:"mode,omitempty"` // tmpfs: its root's mode
	Hide bool   `json:"hide,omitempty"` // tmpfs: a folder of Executor.Hide
	Src  int    `json:"src,omitempty"`  // bind: index in helperSpec.Binds
}

// cover is a folder to cover with an empty tmpfs.
type cover struct {
	path, mode string
	hide       bool
}

// planMounts orders the covers and bind-backs (clean absolute paths, with
// no symlink in them): shallower paths first, so each bind lands in the
// tmpfs that covers it and a deeper cover lands on whatever shows above
// it; then the hidden folders' tmpfs made read-only. A cover that is
// already hidden by another, or is itself bound back, is left out. Every
// bind-back is kept, hidden or not: the host is read-only for the step,
// and a folder of its own is writable through its bind-back only (a
// folder that is not hidden is bound onto itself).
func planMounts(covers []cover, binds []string) []mountOp {
	isBind := map[string]int{}
	for i, b := range binds {
		if _, ok := isBind[b]; !ok {
			isBind[b] = i
		}
	}
	type item struct {
		path  string
		cover *cover
		src   int
	}
	var items []item
	seen := map[string]bool{}
	for i := range covers {
		c := &covers[i]
		if _, ok := isBind[c.path]; ok || seen[c.path] || c.path == "/" {
			continue
		}
		seen[c.path] = true
		items = append(items, item{path: c.path, cover: c})
	}
	for b, i := range isBind {
		items = append(items, item{path: b, src: i})
	}
	// nearest is the deepest other item that is p or holds p.
	nearest := func(p string) *item {
		var best *item
		for i := range items {
			it := &items[i]
			if it.path == p || !under(p, it.path) {
				continue
			}
			if best == nil || len(it.path) > len(best.path) {
				best = it
			}
		}
		return best
	}
	var keep []item
	for _, it := range items {
		n := nearest(it.path)
		hidden := n != nil && n.cover != nil // by a cover, not under a bind-back
		if it.cover != nil && !hidden || it.cover == nil {
			keep = append(keep, it)
		}
	}
	sort.SliceStable(keep, func(i, j int) bool {
		di, dj := strings.Count(keep[i].path, "/"), strings.Count(keep[j].path, "/")
		if di != dj {
			return di < dj
		}
		return keep[i].path < keep[j].path
	})
	var ops, ro []mountOp
	for _, it := range keep {
		if it.cover != nil {
			ops = append(ops, mountOp{Kind: opTmpfs, Path: it.path, Mode: it.cover.mode, Hide: it.cover.hide})
			if it.cover.hide {
				ro = append(ro, mountOp{Kind: opReadonly, Path: it.path})
			}
			continue
		}
		ops = append(ops, mountOp{Kind: opBind, Path: it.path, Src: it.src})
	}
	return append(ops, ro...)
}

// under reports whether p is strictly inside dir.
func under(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

// resolve is p absolute, clean and with its symlinks resolved.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// mounts plans the mount setup of one attempt: the private folders and
// hidden folders covered, the step's own folders bound back. It returns
// the folders to bind (resolved) and the plan.
func (x *Executor) mounts(own []string) ([]string, []mountOp, error) {
	var covers []cover
	for _, d := range privateDirs {
		fi, err := os.Lstat(d.path)
		if err != nil || !fi.IsDir() {
			continue // absent, or a symlink (/var/run → /run): covered through its target
		}
		covers = append(covers, cover{path: d.path, mode: d.mode})
	}
	for _, h := range x.Hide {
		p, err := resolve(h)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("hidden folder %s: %w", h, err)
		}
		covers = append(covers, cover{path: p, mode: "0755", hide: true})
	}
	var binds []string
	for _, o := range own {
		if o == "" {
			continue
		}
		p, err := resolve(o)
		if err != nil {
			return nil, nil, fmt.Errorf("the step's folder %s: %w", o, err)
		}
		binds = append(binds, p)
	}
	return binds, planMounts(covers, binds), nil
}

package pack

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Sentinel errors of the pack model.
var (
	// ErrManifestInvalid: pack.yaml (or a file it names) breaks the format.
	ErrManifestInvalid = errors.New("pack manifest is invalid")
	// ErrInputInvalid: the inputs given to a plan do not match the pack's declarations.
	ErrInputInvalid = errors.New("pack inputs are invalid")
	// ErrInputLimit: the inputs file nests deeper than MaxInputsDepth or
	// holds more than MaxInputsValues values; it was not decoded further.
	ErrInputLimit = errors.New("pack inputs exceed a limit")
	// ErrNotFound: the pack folder or its pack.yaml does not exist.
	ErrNotFound = errors.New("pack not found")
	// ErrUnsafePath: a file of the pack is a symlink, device or escapes the pack folder.
	ErrUnsafePath = errors.New("unsafe path in pack")
	// ErrTooManyFiles: the pack folder holds more than MaxFiles files
	// besides pack.yaml.
	ErrTooManyFiles = errors.New("pack has too many files")
	// ErrExists: the folder pack init would write already exists.
	ErrExists = errors.New("already exists")
	// ErrFileChanged: a file of the pack changed while it was read, so
	// what was read may be no version of it.
	ErrFileChanged = errors.New("pack file changed while building")
)

// Problem is one finding of validation, located in a file.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"` // dotted path in the document, e.g. spec.steps[2].when
	Message string `json:"message"`
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
	}
	if p.Path != "" {
		return fmt.Sprintf("%s: %s: %s", loc, p.Path, p.Message)
	}
	return fmt.Sprintf("%s: %s", loc, p.Message)
}

// ValidationError holds every problem found at once. It wraps
// ErrManifestInvalid, ErrInputInvalid or ErrInputLimit.
type ValidationError struct {
	Kind     error // ErrManifestInvalid, ErrInputInvalid or ErrInputLimit
	Problems []Problem
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return fmt.Sprintf("%v: %s", e.Kind, e.Problems[0])
	}
	lines := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		lines = append(lines, "  "+p.String())
	}
	return fmt.Sprintf("%v: %d problems\n%s", e.Kind, len(e.Problems), strings.Join(lines, "\n"))
}

func (e *ValidationError) Unwrap() error { return e.Kind }

// problems collects findings and positions for one document.
type problems struct {
	file  string
	list  []Problem
	index map[string]pos // document path → position
}

type pos struct{ line, col int }

func (ps *problems) at(path, format string, args ...any) {
	p := ps.lookup(path)
	ps.list = append(ps.list, Problem{File: ps.file, Line: p.line, Column: p.col, Path: path, Message: fmt.Sprintf(format, args...)})
}

// lookup finds the position of path, or of its closest ancestor.
func (ps *problems) lookup(path string) pos {
	for path != "" {
		if p, ok := ps.index[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return ps.index[""]
}

func (ps *problems) err(kind error) error {
	if len(ps.list) == 0 {
		return nil
	}
	sortProblems(ps.list)
	return &ValidationError{Kind: kind, Problems: ps.list}
}

func sortProblems(list []Problem) {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return a.Message < b.Message
	})
}

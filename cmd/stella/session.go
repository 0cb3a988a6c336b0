package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"stellaops.io/stella/admission"
	"stellaops.io/stella/display"
	"stellaops.io/stella/internal/safefile"
	"stellaops.io/stella/redact"
)

// session holds what every command shares: the streams, the environment and
// the global options after config and flags are merged.
type session struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	output string // "text" or "json"
	quiet  bool
	debug  bool // --debug: trace lines on stderr
	// traceMu orders trace lines written from several goroutines.
	traceMu sync.Mutex
	home    string
	// homeMissing: the home was named (--home or STELLA_HOME) and does
	// not exist; a command that only reads the home refuses to start
	// (guardHome), so a mistyped path never reads as an empty cache.
	homeMissing bool
	tenant      string
	sealed      bool
	config      Config
	now         func() time.Time
	// args is the command line as given (shell completion reads it).
	args []string
	// signal is the interrupt (SIGINT, SIGTERM) that cancelled the
	// command's context, 0 if none: a failure then exits 128+signal, as
	// shells and the tools operators script against do.
	signal atomic.Int32
	// usageErr is set by handlers urfave/cli calls without a way to return
	// an error (an unknown command), so the run still fails with exit 1.
	usageErr error
	// emitted is set once a result went to stdout: a failure after it then
	// goes to stderr only, so JSON output stays one document.
	emitted bool
	// holder names this command in lock side files ("stella pack import"),
	// so a process waiting on a lock can say who holds it. Never arguments:
	// they could name files an operator would rather not show.
	holder string
	// redact masks every secret value a run of this command resolved, in
	// all it prints, errors included.
	redact *redact.Set
	// unisolated: this run's steps run without isolation, as the operator
	// asked (--insecure-skip-isolation).
	unisolated bool
}

// clockOffset shifts every clock reading of a session. Only the tests set
// it (main_test.go, from STELLA_TEST_CLOCK_OFFSET in the test binary's own
// environment), to move a run past an approval window without waiting.
var clockOffset time.Duration

const (
	outputText = "text"
	outputJSON = "json"
)

func (s *session) run(ctx context.Context, args []string) int {
	s.args = args
	app := s.newApp()
	ordered, err := reorderArgs(app, args)
	if s.output == "" && jsonAsked(args) {
		// Errors found before the command runs (the command line, the
		// configuration) are reported as JSON too.
		s.output = outputJSON
	}
	if err != nil {
		return s.fail(err)
	}
	err = app.RunContext(ctx, ordered)
	if err == nil {
		err = s.usageErr
	}
	if err == nil {
		return 0
	}
	if strings.HasPrefix(err.Error(), "Required flag") {
		// urfave/cli's own error for a missing required flag has no exported type.
		err = usageError(err.Error())
	}
	return s.fail(err)
}

// jsonAsked reports whether args ask for --output json (before "--").
func jsonAsked(args []string) bool {
	for i, a := range args {
		switch {
		case a == "--":
			return false
		case a == "--output" && i+1 < len(args):
			if args[i+1] == outputJSON {
				return true
			}
		case a == "--output="+outputJSON:
			return true
		}
	}
	return false
}

// before merges defaults, the config file, the environment and flags, in
// that order of increasing precedence.
func (s *session) before(c *cli.Context) error {
	if s.now == nil {
		s.now = func() time.Time { return time.Now().UTC().Add(clockOffset) }
	}
	s.debug = c.Bool("debug")
	s.home = c.String("home")
	if s.home == "" {
		s.home = s.getenv("STELLA_HOME")
	}
	if s.home != "" {
		_, err := os.Stat(s.home)
		s.homeMissing = errors.Is(err, fs.ErrNotExist)
	}
	if s.home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return usageError("cannot find a home folder: set --home or STELLA_HOME")
		}
		s.home = filepath.Join(h, ".stella")
	}
	if err := homeFolder(s.home); err != nil {
		return err
	}
	cfg, err := LoadConfig(filepath.Join(s.home, configFile))
	if err != nil {
		return err
	}
	s.config = cfg
	s.output = firstNonEmpty(c.String("output"), cfg.Output, outputText)
	if s.output != outputText && s.output != outputJSON {
		return usageError(fmt.Sprintf("--output %q: expected text or json", s.output))
	}
	s.quiet = c.Bool("quiet")
	words := []string{"stella"}
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "-") || len(words) == 3 {
			break
		}
		words = append(words, a)
	}
	s.holder = strings.Join(words, " ")
	s.tenant = firstNonEmpty(c.String("tenant"), s.getenv("STELLA_TENANT"), cfg.Tenant, "default")
	s.sealed = cfg.Sealed || isTrue(s.getenv("STELLA_SEALED")) || c.Bool("sealed")
	return nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func isTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// emit writes a command's result: JSON on --output json, else the text form.
// The text form goes through display.Writer: whatever a renderer forgot to
// render, no character a terminal would obey or hide reaches it; renderers
// still pass one-line fields through display.Line (or orDash), which also
// escapes the newlines and tabs the Writer lets through.
func (s *session) emit(v any, text func(w io.Writer)) error {
	s.emitted = true
	if s.output == outputJSON {
		return s.writeJSON(v)
	}
	w := display.NewWriter(s.stdout)
	text(w)
	return w.Flush()
}

// writeJSON writes v as indented JSON on stdout, with every character a
// terminal would obey or hide as a JSON escape (display.JSON).
func (s *session) writeJSON(v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := s.stdout.Write(display.JSON(b.Bytes()))
	return err
}

// emitList is emit for a result with a long list, key, given one item at a
// time by each: as JSON the list is a member of its own after v's, written
// as it is given (writeJSONList); as text, text walks it.
func (s *session) emitList(v any, key string, each func(item func(any) error) error, text func(w io.Writer)) error {
	if s.output != outputJSON {
		return s.emit(v, text)
	}
	s.emitted = true
	return s.writeJSONList(v, key, each)
}

// writeJSONList writes what writeJSON writes of v with one more member
// last, key, a list of the items each gives, written one item at a time
// instead of held: v must encode to a JSON object.
func (s *session) writeJSONList(v any, key string, each func(item func(any) error) error) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	head := b.Bytes()
	switch {
	case bytes.Equal(head, []byte("{}\n")):
		head = []byte("{")
	case bytes.HasSuffix(head, []byte("\n}\n")):
		head = append(head[:len(head)-3], ',')
	default:
		return fmt.Errorf("write JSON: %T does not encode to an object", v)
	}
	kb, err := json.Marshal(key)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(s.stdout)
	bw.Write(display.JSON(head))
	fmt.Fprintf(bw, "\n  %s: [", display.JSON(kb))
	n := 0
	err = each(func(item any) error {
		ib, err := json.MarshalIndent(item, "    ", "  ")
		if err != nil {
			return err
		}
		if n > 0 {
			bw.WriteByte(',')
		}
		n++
		bw.WriteString("\n    ")
		_, err = bw.Write(display.JSON(ib))
		return err
	})
	if err != nil {
		return err
	}
	if n > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("]\n}\n")
	return bw.Flush()
}

// notef writes a diagnostic line on stderr unless --quiet.
func (s *session) notef(format string, args ...any) {
	if s.quiet {
		return
	}
	fmt.Fprint(s.stderr, display.Text(fmt.Sprintf(format, args...))+"\n")
}

// warnf writes a warning on stderr, even with --quiet.
func (s *session) warnf(format string, args ...any) {
	fmt.Fprint(s.stderr, "warning: "+display.Text(fmt.Sprintf(format, args...))+"\n")
}

// tracef writes a --debug line on stderr (masked like every error), one
// at a time whatever goroutine traces.
func (s *session) tracef(format string, args ...any) {
	if !s.debug {
		return
	}
	line := fmt.Sprintf(format, args...)
	if s.redact != nil {
		line = s.redact.String(line)
	}
	s.traceMu.Lock()
	defer s.traceMu.Unlock()
	fmt.Fprintf(s.stderr, "debug: %s\n", display.Text(line))
}

// traceVerdicts traces each admission decision of a command.
func (s *session) traceVerdicts(vs []admission.Verdict) {
	for _, v := range vs {
		what := "admitted"
		if v.Err != nil {
			what = "refused: " + v.Err.Error()
		}
		s.tracef("admission: %s %s (%s): %s", v.Artifact.Kind, orDash(v.Artifact.Ref), v.Artifact.Descriptor.Digest, what)
		for _, r := range v.Signatures {
			state := "valid"
			if !r.Valid {
				state = "not valid: " + r.Reason
			}
			s.tracef("admission:   signature %s by %s: %s", r.Digest, orDash(r.KeyID), state)
		}
	}
}

// interactive reports whether stderr is a terminal (progress bars, prompts).
func (s *session) interactive() bool {
	f, ok := s.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && !s.quiet
}

// readFileArg reads a file named on the command line; "-" is stdin.
func (s *session) readFileArg(name string, limit int64) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = s.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, &fileError{path: name, err: errFileNotFound}
			}
			return nil, err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return nil, &fileError{path: name, err: errInputIsFolder}
		}
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &fileError{path: name, err: errFileTooLarge}
	}
	return b, nil
}

// outputPath checks that the folder a command writes a file into exists:
// stella never creates folders for an operator's output, so a mistyped media
// path fails instead of writing to local disk.
func outputPath(path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return &fileError{path: dir, err: errFolderMissing}
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return &fileError{path: path, err: errOutputIsFolder}
	} else if err == nil && !fi.Mode().IsRegular() {
		// A device, pipe or socket: the file would be renamed over it,
		// replacing a device node instead of writing to it.
		return &fileError{path: path, err: errOutputNotFile}
	}
	// Written through a temporary file beside it: the folder must take
	// new files (a read-only mount, write-protected media, permissions).
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return &fileError{path: dir, err: errFolderNotWritable}
	}
	return nil
}

// prepareOutput checks an output path (outputPath), then removes the temp
// files that killed stella writes left in its folder (a killed export
// leaves one as large as the bundle on the medium), saying so. Temp files
// of writes still running are never touched (safefile.RemoveStale). A
// failure to remove one is a warning: it does not stop this write.
func (s *session) prepareOutput(path string) error {
	if err := outputPath(path); err != nil {
		return err
	}
	removed, err := safefile.RemoveStale(filepath.Dir(path))
	for _, l := range removed {
		s.notef("removed %s (%s), a temp file left by an interrupted stella write", l.Path, display.Bytes(l.Size))
	}
	if err != nil {
		s.warnf("%v", err)
	}
	return nil
}

// homeFolder checks the home before anything is read from it: a folder,
// or a path stella can create later (its nearest existing ancestor is a
// folder that takes new entries). It creates nothing: `stella version`
// leaves no home behind.
func homeFolder(home string) error {
	p := filepath.Clean(home)
	for first := true; ; first = false {
		st, err := os.Stat(p)
		switch {
		case err == nil && st.IsDir() && first:
			return nil
		case err == nil && st.IsDir():
			if unix.Access(p, unix.W_OK) != nil {
				return &fileError{path: home, err: errHomeInvalid}
			}
			return nil
		case err == nil || !errors.Is(err, fs.ErrNotExist):
			return &fileError{path: home, err: errHomeInvalid}
		}
		parent := filepath.Dir(p)
		if parent == p {
			return &fileError{path: home, err: errHomeInvalid}
		}
		p = parent
	}
}

var (
	// errFolderMissing: the folder an output file goes to does not exist.
	errFolderMissing = errors.New("folder does not exist")
	errFileNotFound  = errors.New("file not found")
	errFileTooLarge  = errors.New("file too large")
	// errInputIsFolder: a file to read was given as a folder.
	errInputIsFolder = errors.New("is a folder, not a file")
	// errOutputIsFolder: the output file named is an existing folder.
	errOutputIsFolder = errors.New("is a folder, not a file to write")
	// errOutputNotFile: the output file named exists and is a device,
	// a pipe or a socket.
	errOutputNotFile = errors.New("is a device, pipe or socket, not a file to write")
	// errFolderNotWritable: the folder an output file goes to takes no
	// new file.
	errFolderNotWritable = errors.New("folder is not writable")
	// errHomeInvalid: the home is a file, or cannot be created.
	errHomeInvalid = errors.New("not a folder stella can use as its home")
	// errHomeMissing: a command that only reads the home was given one
	// (--home or STELLA_HOME) that does not exist.
	errHomeMissing = errors.New("home does not exist")
)

type fileError struct {
	path string
	err  error
}

func (e *fileError) Error() string { return e.path + ": " + e.err.Error() }
func (e *fileError) Unwrap() error { return e.err }

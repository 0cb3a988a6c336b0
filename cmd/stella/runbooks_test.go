package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"stellaops.io/stella/doctor"
)

// The runbooks (docs/operations/runbooks) and the per-pack playbooks
// (docs/task-packs/runbook) are checked against the code: every error code
// of errorTable is named by exactly one runbook, every runbook has the
// template's structure and names a doctor check that exists, and every
// `stella …` command they show exists with the flags it is given.

const (
	runbooksDir  = "../../docs/operations/runbooks"
	playbooksDir = "../../docs/task-packs/runbook"
)

// runbookIndexes are files in runbooksDir that are not runbooks.
var runbookIndexes = map[string]bool{"task-packs.md": true}

// imposedRule opens every runbook and the template.
const imposedRule = "> **Imposed rule:**"

// runbookFields are the metadata rows every runbook has.
var runbookFields = []string{"Component", "Severity", "Who is paged", "Doctor check", "Error codes", "Last reviewed"}

// runbookSections are the headings every runbook has, in this order.
var runbookSections = []string{
	"## Symptoms",
	"## Impact",
	"## Diagnosis",
	"### Quick checks",
	"### Deep checks",
	"## Resolution",
	"### Mitigation",
	"### Root-cause fix",
	"## Verification",
	"## Prevention",
	"## Related",
}

// playbookSections are the headings every per-pack playbook has.
var playbookSections = []string{
	"## Purpose",
	"## Inputs and secrets",
	"## Approvers",
	"## Pre-checks",
	"## Post-checks",
	"## Rollback",
}

// doctorCheckIDs are the doctor check IDs runbooks may name.
var doctorCheckIDs = doctor.IDs

var (
	codeRE        = regexp.MustCompile(`ERR_PACK_[A-Z0-9_]+`)
	doctorCheckRE = regexp.MustCompile("^`stella doctor --check ([a-z.]+)[ `]")
	inlineCodeRE  = regexp.MustCompile("`(stella\\s[^`]*)`")
	severities    = []string{"critical", "high", "medium", "low"}
)

// runbook is what the test reads from one runbook file.
type runbook struct {
	name   string
	fields map[string]string
	text   string
}

// readRunbook parses the metadata table and keeps the text.
func readRunbook(t *testing.T, path string) runbook {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rb := runbook{name: filepath.Base(path), fields: map[string]string{}, text: string(data)}
	for _, line := range strings.Split(rb.text, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) >= 2 && slices.Contains(runbookFields, cells[0]) {
			if _, dup := rb.fields[cells[0]]; !dup {
				rb.fields[cells[0]] = strings.Join(cells[1:], " | ")
			}
		}
	}
	return rb
}

func runbookFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(runbooksDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if base := filepath.Base(f); !runbookIndexes[base] && base != "_template.md" {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no runbooks in %s", runbooksDir)
	}
	return out
}

// checkStructure reports the sections missing or out of order in text.
func checkStructure(text string, sections []string) []string {
	var problems []string
	lines := strings.Split(text, "\n")
	at := -1
	for _, s := range sections {
		found := -1
		for i, line := range lines {
			if strings.TrimSpace(line) == s || strings.HasPrefix(line, s+" ") {
				found = i
				break
			}
		}
		switch {
		case found < 0:
			problems = append(problems, fmt.Sprintf("section %q is missing", s))
		case found < at:
			problems = append(problems, fmt.Sprintf("section %q is out of order", s))
		default:
			at = found
		}
	}
	return problems
}

func TestRunbookStructure(t *testing.T) {
	files := append(runbookFiles(t), filepath.Join(runbooksDir, "_template.md"))
	for _, f := range files {
		rb := readRunbook(t, f)
		if !strings.HasPrefix(rb.text, imposedRule) {
			t.Errorf("%s: the first line is not the imposed rule reminder (%s …)", rb.name, imposedRule)
		}
		if !strings.Contains(rb.text, "\n# Runbook: ") {
			t.Errorf("%s: no title line \"# Runbook: <component> — <failure>\"", rb.name)
		}
		for _, field := range runbookFields {
			if strings.TrimSpace(rb.fields[field]) == "" {
				t.Errorf("%s: metadata field %q is missing or empty", rb.name, field)
			}
		}
		for _, p := range checkStructure(rb.text, runbookSections) {
			t.Errorf("%s: %s", rb.name, p)
		}
		for _, h := range runbookSections {
			if h != "## Diagnosis" && h != "## Resolution" && strings.TrimSpace(section(rb.text, h)) == "" {
				t.Errorf("%s: section %q is empty", rb.name, h)
			}
		}
		if rb.name == "_template.md" {
			continue
		}
		if sev := strings.Fields(rb.fields["Severity"]); len(sev) == 0 || !slices.Contains(severities, sev[0]) {
			t.Errorf("%s: Severity %q does not start with one of %v", rb.name, rb.fields["Severity"], severities)
		}
		if !regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`).MatchString(rb.fields["Last reviewed"]) {
			t.Errorf("%s: Last reviewed %q is not a date YYYY-MM-DD", rb.name, rb.fields["Last reviewed"])
		}
		m := doctorCheckRE.FindStringSubmatch(rb.fields["Doctor check"])
		switch {
		case m == nil:
			t.Errorf("%s: Doctor check %q does not start with `stella doctor --check <id>`", rb.name, rb.fields["Doctor check"])
		case !slices.Contains(doctorCheckIDs, m[1]):
			t.Errorf("%s: Doctor check names %q, which is not a doctor check (%v)", rb.name, m[1], doctorCheckIDs)
		}
	}
}

// TestEveryDoctorCheckHasARunbook: each doctor check is named by some
// runbook (in its metadata or its diagnosis), so a failing check leads to
// what to do.
func TestEveryDoctorCheckHasARunbook(t *testing.T) {
	named := map[string]bool{}
	for _, f := range runbookFiles(t) {
		rb := readRunbook(t, f)
		for _, cmd := range stellaCommands(rb.text) {
			if m := regexp.MustCompile(`^stella doctor --check ([a-z.]+)`).FindStringSubmatch(cmd); m != nil {
				named[m[1]] = true
			}
		}
	}
	for _, id := range doctorCheckIDs {
		if !named[id] {
			t.Errorf("doctor check %s is named by no runbook: add `stella doctor --check %s` to the runbook of what it finds", id, id)
		}
	}
}

// TestEveryErrorCodeHasOneRunbook: each code of errorTable is in the "Error
// codes" field of exactly one runbook, and each code there exists.
func TestEveryErrorCodeHasOneRunbook(t *testing.T) {
	// ERR_PACK_INTERNAL has no row: it is what lookupError gives an error
	// no row describes.
	known := map[string]bool{lookupError(errors.New("unexpected")).Code: true}
	for _, r := range errorTable {
		known[r.Code] = true
	}
	owners := map[string][]string{}
	for _, f := range runbookFiles(t) {
		rb := readRunbook(t, f)
		field := rb.fields["Error codes"]
		codes := codeRE.FindAllString(field, -1)
		if len(codes) == 0 && !strings.HasPrefix(field, "none") {
			t.Errorf("%s: Error codes names no ERR_PACK_ code and does not say \"none (…)\"", rb.name)
		}
		symptoms := section(rb.text, "## Symptoms")
		seen := map[string]bool{}
		for _, c := range codes {
			if !strings.Contains(symptoms, c) {
				t.Errorf("%s: %s is in Error codes but its Symptoms never say what it looks like", rb.name, c)
			}
			if !known[c] {
				t.Errorf("%s: Error codes lists %s, which is not in errorTable (cmd/stella/errors.go)", rb.name, c)
			}
			if seen[c] {
				t.Errorf("%s: Error codes lists %s twice", rb.name, c)
			}
			seen[c] = true
			owners[c] = append(owners[c], rb.name)
		}
		// Codes in the prose must exist too.
		for _, c := range codeRE.FindAllString(rb.text, -1) {
			if !known[c] && !strings.HasSuffix(c, "_") {
				t.Errorf("%s: mentions %s, which is not in errorTable", rb.name, c)
			}
		}
	}
	// A hint that sends the operator to a runbook sends them to the owner.
	hintRE := regexp.MustCompile(`runbook ([a-z][a-z-]*[a-z])`)
	for _, r := range errorTable {
		for _, m := range hintRE.FindAllStringSubmatch(r.Hint, -1) {
			if n := owners[r.Code]; len(n) == 1 && n[0] != m[1]+".md" {
				t.Errorf("the hint of %s points to the runbook %s, but %s owns the code", r.Code, m[1], n[0])
			}
		}
	}
	index, err := os.ReadFile(filepath.Join(runbooksDir, "task-packs.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range runbookFiles(t) {
		if !strings.Contains(string(index), "("+filepath.Base(f)+")") {
			t.Errorf("task-packs.md does not link the runbook %s", filepath.Base(f))
		}
	}
	var codes []string
	for c := range known {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		switch n := owners[c]; len(n) {
		case 0:
			t.Errorf("%s has no runbook: add it to the Error codes field of the runbook of its family in docs/operations/runbooks (or write one from _template.md)", c)
		case 1:
		default:
			t.Errorf("%s is in the Error codes field of several runbooks %v: keep it in exactly one", c, n)
		}
	}
}

// TestRunbookExitCodes: an exit code a runbook gives for a code, in a
// table row (| `CODE`, `CODE` | N, M |) or in prose (`CODE` (exit N)), is the
// exit code of errorTable.
func TestRunbookExitCodes(t *testing.T) {
	exits := map[string]int{}
	for _, r := range errorTable {
		exits[r.Code] = r.Exit
	}
	rowRE := regexp.MustCompile("(?m)^\\| ((?:`ERR_PACK_[A-Z0-9_]+`(?:, )?)+) \\| ([0-9]+(?:, [0-9]+)*) \\|")
	proseRE := regexp.MustCompile("`(ERR_PACK_[A-Z0-9_]+)`[^`\\n]{0,12}\\(exit ([0-9]+)")
	checked := 0
	for _, f := range runbookFiles(t) {
		rb := readRunbook(t, f)
		for _, m := range rowRE.FindAllStringSubmatch(rb.text, -1) {
			listed := strings.Split(m[2], ", ")
			for _, c := range codeRE.FindAllString(m[1], -1) {
				checked++
				if e, ok := exits[c]; ok && !slices.Contains(listed, fmt.Sprint(e)) {
					t.Errorf("%s: the row of %s gives exit %s; errorTable says %d", rb.name, c, m[2], e)
				}
			}
		}
		for _, m := range proseRE.FindAllStringSubmatch(rb.text, -1) {
			checked++
			if e, ok := exits[m[1]]; ok && fmt.Sprint(e) != m[2] {
				t.Errorf("%s: %s (exit %s); errorTable says %d", rb.name, m[1], m[2], e)
			}
		}
	}
	if checked < 40 {
		t.Errorf("checked only %d exit codes: the parser lost them", checked)
	}
}

// section returns the text from the heading to the next heading of the
// same or a higher level.
func section(text, heading string) string {
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		return ""
	}
	rest := text[i+len(heading)+2:]
	level := strings.Count(strings.Fields(heading)[0], "#")
	for _, prefix := range []string{"\n# ", "\n## ", "\n### "}[:level] {
		if j := strings.Index(rest, prefix); j >= 0 {
			rest = rest[:j]
		}
	}
	return rest
}

// TestRunbookCommandsExist: every `stella …` command shown in a runbook or
// a playbook (code blocks and inline code) is a command of the tree, with
// flags it has; every doctor --check names a check.
func TestRunbookCommandsExist(t *testing.T) {
	app := (&session{stdin: strings.NewReader(""), getenv: func(string) string { return "" }}).newApp()
	files := runbookFiles(t)
	playbooks, _ := filepath.Glob(filepath.Join(playbooksDir, "*.md"))
	files = append(files, playbooks...)
	files = append(files, filepath.Join(runbooksDir, "task-packs.md"))
	total := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range stellaCommands(string(data)) {
			total++
			if err := checkCommandLine(app, cmd); err != nil {
				t.Errorf("%s: `%s`: %v", filepath.Base(f), cmd, err)
			}
		}
	}
	if total < 50 {
		t.Errorf("found only %d stella commands in the runbooks: the parser lost them", total)
	}
}

// stellaCommands returns the stella command lines of a markdown text: lines
// of fenced code blocks that start with stella (continuations joined), and
// inline code spans, also across line breaks, that start with "stella ".
func stellaCommands(text string) []string {
	var out []string
	var prose strings.Builder
	inBlock := false
	pending := ""
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inBlock = !inBlock
			prose.WriteString("\n")
			continue
		}
		if !inBlock {
			prose.WriteString(line + "\n")
			continue
		}
		if pending != "" {
			pending += " " + strings.TrimSuffix(trimmed, "\\")
			if !strings.HasSuffix(trimmed, "\\") {
				out = append(out, strings.Join(strings.Fields(pending), " "))
				pending = ""
			}
			continue
		}
		trimmed = strings.TrimPrefix(trimmed, "$ ")
		if strings.HasPrefix(trimmed, "stella ") {
			if strings.HasSuffix(trimmed, "\\") {
				pending = strings.TrimSuffix(trimmed, "\\")
				continue
			}
			out = append(out, trimmed)
		}
	}
	for _, m := range inlineCodeRE.FindAllStringSubmatch(prose.String(), -1) {
		out = append(out, strings.Join(strings.Fields(m[1]), " "))
	}
	return out
}

// checkCommandLine walks the command words of line through the tree and
// checks each flag against the command reached, its parents and the
// global flags. Flags given before a subcommand must belong to the
// command reached so far.
func checkCommandLine(app *cli.App, line string) error {
	// Cut at shell operators and comments.
	for _, sep := range []string{" #", " |", " &&", " ;", " >", " <", " 2>"} {
		if i := strings.Index(line, sep); i >= 0 {
			line = line[:i]
		}
	}
	words := strings.Fields(line)[1:]
	scopes := [][]cli.Flag{app.Flags}
	cmds := app.Commands
	var cur *cli.Command
	path := "stella"
	argsStarted := false
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "--" {
			break
		}
		if strings.HasPrefix(w, "-") && len(w) > 1 {
			name, hasValue := strings.TrimLeft(w, "-"), false
			if j := strings.Index(name, "="); j >= 0 {
				name, hasValue = name[:j], true
			}
			if name == "help" || name == "h" {
				continue
			}
			f := runbookFlag(scopes, name)
			if f == nil {
				return fmt.Errorf("%s has no flag --%s", path, name)
			}
			if d, ok := f.(cli.DocGenerationFlag); ok && d.TakesValue() && !hasValue {
				i++
			}
			if name == "check" && path == "stella doctor" && i < len(words) {
				for _, id := range strings.Split(strings.Trim(words[i], "\"'"), ",") {
					if !slices.Contains(doctorCheckIDs, id) && !slices.ContainsFunc(doctorCheckIDs, func(x string) bool { return strings.HasPrefix(x, id+".") }) {
						return fmt.Errorf("stella doctor --check %s: no such check", id)
					}
				}
			}
			continue
		}
		if argsStarted {
			continue
		}
		if next := runbookCommand(cmds, w); next != nil {
			cur, cmds, path = next, next.Subcommands, path+" "+next.Name
			scopes = append(scopes, next.Flags)
			continue
		}
		if cur == nil || (len(cur.Subcommands) > 0 && cur.Action == nil) {
			return fmt.Errorf("%s has no command %q", path, w)
		}
		argsStarted = true
	}
	if cur == nil {
		return fmt.Errorf("no command")
	}
	if len(cur.Subcommands) > 0 && cur.Action == nil {
		return fmt.Errorf("%s needs a command", path)
	}
	return nil
}

func runbookCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.Name == name || slices.Contains(c.Aliases, name) {
			return c
		}
	}
	return nil
}

func runbookFlag(scopes [][]cli.Flag, name string) cli.Flag {
	for _, flags := range scopes {
		for _, f := range flags {
			if slices.Contains(f.Names(), name) {
				return f
			}
		}
	}
	return nil
}

// TestPlaybooksCoverSamplePacks: each sample pack of testdata/packs has a
// playbook with every section, and each playbook is of a sample pack.
func TestPlaybooksCoverSamplePacks(t *testing.T) {
	packs, err := filepath.Glob("../../testdata/packs/*/pack.yaml")
	if err != nil || len(packs) == 0 {
		t.Fatalf("no sample packs: %v", err)
	}
	want := map[string]bool{}
	for _, p := range packs {
		want[filepath.Base(filepath.Dir(p))] = true
	}
	playbooks, _ := filepath.Glob(filepath.Join(playbooksDir, "*.md"))
	have := map[string]bool{}
	for _, f := range playbooks {
		name := strings.TrimSuffix(filepath.Base(f), ".md")
		if name == "README" {
			continue
		}
		have[name] = true
		if !want[name] {
			t.Errorf("%s: no sample pack testdata/packs/%s", filepath.Base(f), name)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range checkStructure(string(data), playbookSections) {
			t.Errorf("%s: %s", filepath.Base(f), p)
		}
		if !strings.Contains(string(data), "$PACKS/"+name) && !strings.Contains(string(data), name+":") {
			t.Errorf("%s: never names the pack %s in a command", filepath.Base(f), name)
		}
	}
	for p := range want {
		if !have[p] {
			t.Errorf("sample pack %s has no playbook %s/%s.md", p, playbooksDir, p)
		}
	}
}

// TestCheckCommandLine: the command check refuses what does not exist.
func TestCheckCommandLine(t *testing.T) {
	app := (&session{stdin: strings.NewReader(""), getenv: func(string) string { return "" }}).newApp()
	for line, ok := range map[string]bool{
		"stella pack runs show RUN":                                        true,
		"stella --output json pack runs show RUN":                          true,
		"stella pack runs logs --step STEP RUN":                            true,
		"stella pack approve --offline-request --run RUN --gate GATE -o F": true,
		"stella pack approve review REQUEST":                               true,
		"stella doctor --check cache.lock":                                 true,
		"stella doctor --check cache":                                      true,
		"stella pack runs":                                                 false, // needs a command
		"stella pack runz show RUN":                                        false,
		"stella pack runs show --nope RUN":                                 false,
		"stella --nope pack list":                                          false,
		"stella doctor --check cache.nope":                                 false,
		"stella vault put --reveal NAME":                                   false, // a flag of vault get
	} {
		if err := checkCommandLine(app, line); (err == nil) != ok {
			t.Errorf("%s: got %v, want ok=%v", line, err, ok)
		}
	}
	doc := "# T\n## A\n\nx\n### B\n\n## C\ny\n"
	if b, a := strings.TrimSpace(section(doc, "### B")), section(doc, "## A"); b != "" || !strings.Contains(a, "x") || strings.Contains(a, "y") {
		t.Errorf("section: ### B = %q, ## A = %q", b, a)
	}
	got := stellaCommands("a `stella pack\n  runs list` b\n```sh\nstella cache \\\n  verify\n```\n")
	if want := []string{"stella cache verify", "stella pack runs list"}; !slices.Equal(got, want) {
		t.Errorf("stellaCommands = %q, want %q", got, want)
	}
}

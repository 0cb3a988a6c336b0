package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestFlagsAnywhere walks every command: each of its flags (and each app
// flag) given after a positional argument is put where urfave/cli reads
// it, with its value; "--" still ends the flags; a value flag given twice
// with different values is a usage error, and the same value twice is not.
func TestFlagsAnywhere(t *testing.T) {
	s := &session{getenv: func(string) string { return "" }}
	app := s.newApp()
	var leaves int
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(slices.Clone(path), c.Name)
			if len(c.Subcommands) > 0 {
				walk(p, c.Subcommands)
				continue
			}
			leaves++
			for _, f := range c.Flags {
				words := flagWords(f)
				line := append(append(append([]string{"stella"}, p...), "POS"), words...)
				want := append(append(append([]string{"stella"}, p...), words...), "POS")
				check(t, app, line, want)
				// An app flag after the positional goes before the command.
				line = append(append(append([]string{"stella"}, p...), words...), "POS", "--output", "json")
				want = append(append(append([]string{"stella", "--output", "json"}, p...), words...), "POS")
				check(t, app, line, want)
			}
			// After "--", a flag is an argument.
			check(t, app, append(append([]string{"stella"}, p...), "POS", "--", "--output", "json"),
				append(append([]string{"stella"}, p...), "POS", "--", "--output", "json"))
		}
	}
	walk(nil, app.Commands)
	if leaves < 40 {
		t.Fatalf("walked %d commands; the tree has more", leaves)
	}

	for _, tc := range []struct {
		line string
		err  string
	}{
		{"stella --output json pack list --output text", `--output is given twice, as "json" and as "text"`},
		{"stella pack build DIR -o a.tar --out b.tar", `--out is given twice, as "a.tar" and as "b.tar"`},
		{"stella pack build DIR -o a.tar --out=a.tar", ""},
		{"stella trust add --role publisher --role Packs.Run --key k.pub name", ""},
	} {
		_, err := reorderArgs(app, strings.Fields(tc.line))
		if got := errText(err); !strings.Contains(got, tc.err) || (tc.err == "") != (err == nil) {
			t.Errorf("%s: error %q, want %q", tc.line, got, tc.err)
		}
	}
	// help at the top, at every level.
	check(t, app, strings.Fields("stella help pack build"), strings.Fields("stella pack build --help"))
	check(t, app, strings.Fields("stella help"), strings.Fields("stella --help"))
	// Standard input and negative numbers are arguments, not flags.
	check(t, app, strings.Fields("stella pack plan - --pack p"), strings.Fields("stella pack plan --pack p -"))
}

func flagWords(f cli.Flag) []string {
	name := "--" + f.Names()[0]
	if d, ok := f.(cli.DocGenerationFlag); ok && d.TakesValue() {
		return []string{name, "V"}
	}
	return []string{name}
}

func check(t *testing.T, app *cli.App, line, want []string) {
	t.Helper()
	got, err := reorderArgs(app, line)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("%q:\n got %q (%v)\nwant %q", line, got, err, want)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionFlag is urfave/cli's shell completion request, always last.
const completionFlag = "--generate-bash-completion"

// flagSpec is what the argument reorderer needs of one flag.
type flagSpec struct {
	name   string // the flag's first name: aliases map to it
	value  bool   // takes a value (--name V or --name=V)
	repeat bool   // may be given more than once (slices, --meta)
}

// levelFlags are the flags one level of the command line accepts, by every
// name and alias.
type levelFlags map[string]flagSpec

func flagsOf(flags []cli.Flag, help bool) levelFlags {
	m := levelFlags{}
	add := func(f cli.Flag) {
		names := f.Names()
		if len(names) == 0 {
			return
		}
		spec := flagSpec{name: names[0]}
		if d, ok := f.(cli.DocGenerationFlag); ok {
			spec.value = d.TakesValue()
		}
		if s, ok := f.(cli.DocGenerationSliceFlag); ok && s.IsSliceFlag() {
			spec.repeat = true
		}
		if _, ok := f.(*cli.GenericFlag); ok {
			spec.repeat = true
		}
		for _, n := range names {
			m[n] = spec
		}
	}
	for _, f := range flags {
		add(f)
	}
	if help {
		add(cli.HelpFlag)
	}
	return m
}

// reorderArgs lets flags come anywhere on the command line, as the tools
// operators use every day allow: urfave/cli v2 (like Go's flag package)
// takes every word after the first positional argument as an argument,
// and the app's own flags only before the command name. It walks args
// (program name first), follows the command names, and gives each flag to
// the deepest level of the command path that defines it (the command, a
// parent, or the app), then rebuilds the line as urfave/cli wants it:
// each level's flags right after its name, positional arguments last.
// "--" ends the flags: it and everything after it stay as they are, at
// the end. A value flag given twice with different values is a usage
// error, not a silent choice; slice flags may repeat. An unknown flag
// before any positional argument stays with the command, where urfave/cli
// reports it; after one, it is an argument, as it always was.
func reorderArgs(app *cli.App, args []string) ([]string, error) {
	if len(args) < 2 || args[len(args)-1] == completionFlag {
		return args, nil
	}
	if args[1] == "help" {
		// `stella help pack build` is `stella pack build --help`, at
		// every level (urfave/cli has it only below the app).
		args = append(append([]string{args[0]}, args[2:]...), "--help")
	}
	appFlags := flagsOf(app.Flags, true)
	if cli.VersionFlag != nil && !app.HideVersion {
		for k, v := range flagsOf([]cli.Flag{cli.VersionFlag}, false) {
			appFlags[k] = v
		}
	}
	levels := []levelFlags{appFlags}
	names := []string{""}    // the command path; names[0] is the app
	given := [][]string{nil} // flag words per level
	var positional, tail []string
	seen := map[string]string{} // level/flag → value, for flags given twice
	cmds := app.Commands
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		t := rest[i]
		if t == "--" {
			tail = rest[i:]
			break
		}
		if name, value, hasValue, ok := flagWord(t); ok {
			lvl := len(levels) - 1
			for lvl > 0 {
				if _, ok := levels[lvl][name]; ok {
					break
				}
				lvl--
			}
			spec, known := levels[lvl][name]
			if !known && len(positional) > 0 {
				// Not a flag of this command line: an argument, as
				// urfave/cli would take it, so that a mistyped value (a
				// secret given on the line, say) is refused as an
				// argument and never repeated as an unknown flag.
				positional = append(positional, t)
				continue
			}
			if !known {
				// Unknown here: urfave/cli reports it, with the command.
				lvl = len(levels) - 1
			}
			words := []string{t}
			if known && spec.value && !hasValue {
				if i+1 < len(rest) {
					value = rest[i+1]
					words = append(words, value)
					i++
				}
			}
			if known && spec.value && !spec.repeat {
				key := fmt.Sprintf("%d/%s", lvl, spec.name)
				if prev, dup := seen[key]; dup && prev != value {
					return nil, usageError(fmt.Sprintf("--%s is given twice, as %q and as %q: give it once", spec.name, prev, value))
				}
				seen[key] = value
			}
			given[lvl] = append(given[lvl], words...)
			continue
		}
		if len(positional) == 0 {
			if c := findCommand(cmds, t); c != nil {
				levels = append(levels, flagsOf(c.Flags, !c.HideHelp))
				names = append(names, t)
				given = append(given, nil)
				cmds = c.Subcommands
				continue
			}
		}
		positional = append(positional, t)
	}
	out := []string{args[0]}
	for lvl := range levels {
		if lvl > 0 {
			out = append(out, names[lvl])
		}
		out = append(out, given[lvl]...)
	}
	out = append(out, positional...)
	return append(out, tail...), nil
}

// flagWord parses t as a flag: "-n", "--name", "--name=value". A lone "-"
// (standard input) and words such as "-1" are not flags.
func flagWord(t string) (name, value string, hasValue, ok bool) {
	if len(t) < 2 || t[0] != '-' {
		return "", "", false, false
	}
	name = strings.TrimPrefix(strings.TrimPrefix(t, "-"), "-")
	if name == "" || !(name[0] >= 'a' && name[0] <= 'z' || name[0] >= 'A' && name[0] <= 'Z') {
		return "", "", false, false
	}
	if k, v, found := strings.Cut(name, "="); found {
		return k, v, true, true
	}
	return name, "", false, true
}

// findCommand is the command of cmds named (or aliased) name.
func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

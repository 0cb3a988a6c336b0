package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/runs"
)

const bashCompletion = `# bash completion for stella; source it or put it in /etc/bash_completion.d/stella
_stella_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == -* ]]; then
    # A flag being typed: stella lists the command's flags.
    opts=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD-1}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD-1}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -F _stella_complete stella
`

const zshCompletion = `#compdef stella
# zsh completion for stella; put it in a folder of $fpath as _stella
_stella() {
  local -a opts
  if [[ "${words[CURRENT]}" == -* ]]; then
    opts=("${(@f)$(${words[1]} ${words[@]:1:$CURRENT-2} ${words[CURRENT]} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[1]} ${words[@]:1:$CURRENT-2} --generate-bash-completion 2>/dev/null)}")
  fi
  _describe 'values' opts
}
compdef _stella stella
`

func (s *session) completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "SHELL",
		Description: `Examples:
   source <(stella completion bash)
   stella completion zsh > "${fpath[1]}/_stella"
   stella completion fish > ~/.config/fish/completions/stella.fish`,
		Action: action(func(_ context.Context, c *cli.Context) error {
			if err := argsExactly(c, 1, "one of bash, zsh, fish"); err != nil {
				return err
			}
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(s.stdout, bashCompletion)
			case "zsh":
				fmt.Fprint(s.stdout, zshCompletion)
			case "fish":
				script, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				fmt.Fprint(s.stdout, script)
			default:
				return usageError(fmt.Sprintf("completion: unknown shell %q: expected bash, zsh or fish", c.Args().First()))
			}
			return nil
		}),
	}
}

// setCompletions gives the commands that take a pack ref (ID:VERSION) or a
// run id as their argument a completion of the refs in the cache or the
// runs of this home; a word being typed as a flag completes the flags.
func (s *session) setCompletions(cmds []*cli.Command) {
	for _, c := range cmds {
		switch {
		case strings.HasPrefix(c.ArgsUsage, "ID:VERSION"):
			c.BashComplete = s.complete(s.packRefs)
		case strings.HasPrefix(c.ArgsUsage, "RUN-ID"):
			c.BashComplete = s.complete(s.runIDs)
		}
		s.setCompletions(c.Subcommands)
	}
}

// complete lists what list gives, or the command's flags when the word
// being completed is a flag. It prints nothing when the home cannot be
// read: a completion never fails loudly.
func (s *session) complete(list func(ctx context.Context) ([]string, error)) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		if args := s.args; len(args) >= 2 && strings.HasPrefix(args[len(args)-2], "-") {
			cli.DefaultCompleteWithFlags(c.Command)(c)
			return
		}
		// urfave/cli runs no Before for a completion: the home and the
		// configuration are read here.
		lineage := c.Lineage()
		if err := s.before(lineage[len(lineage)-1]); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(c.Context, 2*time.Second)
		defer cancel()
		words, err := list(ctx)
		if err != nil {
			return
		}
		for _, w := range words {
			fmt.Fprintln(c.App.Writer, w)
		}
	}
}

// packRefs are the refs of the packs in the cache.
func (s *session) packRefs(ctx context.Context) ([]string, error) {
	st, err := s.openCache(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := st.List(ctx, artifact.KindPack)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, e := range entries {
		if e.Ref != "" {
			refs = append(refs, e.Ref)
		}
	}
	return refs, nil
}

// runIDs are the ids of this tenant's runs, newest first.
func (s *session) runIDs(ctx context.Context) ([]string, error) {
	_, rs, err := s.openRuns(ctx)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	list, err := rs.List(ctx, runs.Filter{Tenant: s.tenant})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(list))
	for _, r := range list {
		ids = append(ids, r.ID)
	}
	return ids, nil
}

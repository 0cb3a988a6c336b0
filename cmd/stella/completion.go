package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"
)

const bashCompletion = `# bash completion for stella; source it or put it in /etc/bash_completion.d/stella
_stella_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  opts=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD-1}" --generate-bash-completion 2>/dev/null)
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -F _stella_complete stella
`

const zshCompletion = `#compdef stella
# zsh completion for stella; put it in a folder of $fpath as _stella
_stella() {
  local -a opts
  opts=("${(@f)$(${words[1]} ${words[@]:1:$CURRENT-2} --generate-bash-completion 2>/dev/null)}")
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

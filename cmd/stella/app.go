package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func (s *session) newApp() *cli.App {
	app := &cli.App{
		Name:  "stella",
		Usage: "move, approve, run and account for StellaOps Task Packs across air gaps",
		Description: `stella builds task packs into OCI artifacts, keeps them in a verified local cache,
carries them across air gaps as bundle files, mirrors them into sealed registries,
and binds approvals and evidence to the plan hash of what runs.

Examples:
   stella pack init rotate-creds            # scaffold a pack that validates and plans
   stella pack validate ./rotate-creds      # report every problem at once
   stella pack plan --pack ./rotate-creds --inputs inputs.json`,
		Version:              version,
		Reader:               s.stdin,
		Writer:               s.stdout,
		ErrWriter:            s.stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Suggest:              true,
		// urfave/cli would call os.Exit itself for errors carrying an exit
		// code; the session maps errors to codes after deferred cleanup ran.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError(err.Error())
		},
		CommandNotFound: func(_ *cli.Context, name string) {
			s.usageErr = usageError(fmt.Sprintf("unknown command %q; see `stella --help`", name))
		},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Usage: "result format: text or json (stable keys, see docs/cli)", DefaultText: "text"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress or diagnostics on stderr; errors are still reported"},
			&cli.BoolFlag{Name: "debug", Aliases: []string{"verbose"}, Usage: "trace on stderr every registry HTTP exchange and every admission decision (never a credential or secret)"},
			&cli.StringFlag{Name: "home", Usage: "stella home folder (cache, config, trust store)", DefaultText: "$STELLA_HOME, else ~/.stella"},
			&cli.StringFlag{Name: "tenant", Usage: "tenant to act for", DefaultText: "$STELLA_TENANT, config tenant, else \"default\""},
			&cli.BoolFlag{Name: "sealed", Usage: "sealed mode: no network except configured sealed registries; secrets only from the sealed vault (also STELLA_SEALED=1 or config)"},
		},
		Before: s.before,
		Commands: []*cli.Command{
			s.packCommand(),
			s.cacheCommand(),
			s.registryCommand(),
			s.vaultCommand(),
			s.keyCommand(),
			s.trustCommand(),
			s.doctorCommand(),
			s.serveCommand(),
			s.notifyCommand(),
			s.completionCommand(),
			s.versionCommand(),
			s.docsCommand(),
		},
	}
	cli.VersionPrinter = func(c *cli.Context) { currentBuild().render(c.App.Writer) }
	setUsageErrors(app.Commands)
	s.guardHome(app.Commands)
	s.setCompletions(app.Commands)
	return app
}

// setUsageErrors makes every command report flag errors as ERR_PACK_USAGE
// (exit 1) instead of printing its help on stdout.
func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return usageError(err.Error())
		}
		setUsageErrors(c.Subcommands)
	}
}

// homeCommands are the commands that do not need an existing home: those
// that create it by storing something, and those that read nothing from
// it (or only what a later step reports as missing anyway). Every other
// command reads the home and refuses one that was named but does not
// exist (ERR_PACK_HOME_MISSING): a mistyped --home would otherwise show an
// empty cache, an empty trust store or no runs, and look like an answer.
var homeCommands = map[string]bool{
	// They store something, creating the home.
	"pack build": true, "pack import": true, "pack sign": true, "pack mirror pull": true,
	"pack approve": true, "pack run": true, "registry login": true, "vault init": true,
	"key generate": true, "trust add": true,
	// They read nothing the home holds, or report what they miss by name.
	"pack init": true, "pack validate": true, "pack plan": true, "pack approve review": true,
	"pack approve sign": true, "completion": true, "version": true, "gen-docs": true,
	// It refuses a missing home itself, except for --list.
	"doctor": true,
}

// guardHome makes every command outside homeCommands refuse a named home
// that does not exist, before it opens anything (which would create it).
func (s *session) guardHome(cmds []*cli.Command, parents ...string) {
	for _, c := range cmds {
		path := strings.Join(append(parents[:len(parents):len(parents)], c.Name), " ")
		s.guardHome(c.Subcommands, append(parents[:len(parents):len(parents)], c.Name)...)
		if c.Action == nil || homeCommands[path] {
			continue
		}
		run := c.Action
		c.Action = func(ctx *cli.Context) error {
			if s.homeMissing {
				return &fileError{path: s.home, err: errHomeMissing}
			}
			return run(ctx)
		}
	}
}

// action adapts a command body to urfave/cli.
func action(fn func(ctx context.Context, c *cli.Context) error) cli.ActionFunc {
	return func(c *cli.Context) error { return fn(c.Context, c) }
}

// argsExactly checks the number of positional arguments.
func argsExactly(c *cli.Context, n int, what string) error {
	if c.NArg() != n {
		return usageError(fmt.Sprintf("%s: expected %s", c.Command.FullName(), what))
	}
	return nil
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"stellaops.io/stella/admission"
	"stellaops.io/stella/approve"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/display"
	"stellaops.io/stella/notify"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/secret"
)

// defaultClockSkew is the documented default of the config's clockSkew.
const defaultClockSkew = 5 * time.Minute

func (s *session) clockSkew() time.Duration {
	if s.config.ClockSkew > 0 {
		return s.config.ClockSkew
	}
	return defaultClockSkew
}

func (s *session) approveCommands() []*cli.Command {
	decisionFlags := []cli.Flag{
		&cli.StringFlag{Name: "key", Usage: "approver key: a key file or vault:NAME"},
		&cli.StringFlag{Name: "decision", Usage: "approve or reject", Value: "approve"},
		&cli.StringFlag{Name: "comment", Usage: "why; recorded and signed with the decision"},
	}
	return []*cli.Command{
		{
			Name:  "approve",
			Usage: "request, sign and record approvals bound to a plan hash",
			Description: `Sealed operator, offline: write a request bundle for an approver's machine, then
import the signed response.
   stella pack approve --offline-request --plan 3f2a9c1d7e4b --gate change-board -o request.stella.tar
   stella pack approve --offline-response response.stella.tar

Approver, on their own machine with their own home:
   stella pack approve review request.stella.tar
   stella pack approve sign --key approver.key --decision approve --comment "scope checked" -o response.stella.tar request.stella.tar

An approver at this machine decides locally (the same checks apply):
   stella pack approve --plan 3f2a9c1d7e4b --gate change-board --key vault:alice --comment "ok"

A run waiting at a gate names its plan: --run stands for --plan.
   stella pack approve --run run:default:20261127T163555.123456Z --gate change-board --key vault:alice --comment "ok"
   stella pack approve --offline-request --run run:default:20261127T163555.123456Z --gate change-board -o request.stella.tar`,
			Flags: append([]cli.Flag{
				&cli.BoolFlag{Name: "offline-request", Usage: "write a request bundle for --plan and --gate"},
				&cli.StringFlag{Name: "offline-response", Usage: "import a signed response bundle"},
				&cli.StringFlag{Name: "plan", Usage: "saved plan hash (or a unique prefix of 12+ hex digits)"},
				&cli.StringFlag{Name: "gate", Usage: "approval gate (its step id)"},
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "request bundle file to write", DefaultText: "request-<id>.stella.tar"},
				&cli.StringFlag{Name: "requester", Usage: "who asks", DefaultText: "$USER@host"},
				&cli.StringFlag{Name: "run", Usage: "run id: approve the gate of the plan this run runs (instead of --plan)"},
			}, decisionFlags...),
			Action: action(s.packApprove),
			Subcommands: []*cli.Command{
				{
					Name:      "review",
					Usage:     "check a request bundle and show what would be approved",
					ArgsUsage: "REQUEST",
					Action:    action(s.approveReview),
				},
				{
					Name:      "sign",
					Usage:     "sign a decision on a request bundle into a response bundle",
					ArgsUsage: "REQUEST",
					Flags: append([]cli.Flag{
						&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "response bundle to write", DefaultText: "response-<id>.stella.tar"},
						&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation"},
					}, decisionFlags...),
					Action: action(s.approveSign),
				},
			},
		},
		{
			Name:  "approvals",
			Usage: "show the state of approval gates",
			Subcommands: []*cli.Command{
				{
					Name:  "list",
					Usage: "every gate with requests or decisions: pending, approved n/m, rejected, expired",
					Flags: []cli.Flag{
						&cli.BoolFlag{Name: "all-tenants", Usage: "not only the current tenant"},
					},
					Action: action(s.approvalsList),
				},
				{
					Name:      "show",
					Usage:     "one gate: who decided what, when; its requests (GATE may be left out when the plan has one approval gate)",
					ArgsUsage: "PLAN [GATE]",
					Action:    action(s.approvalsShow),
				},
				{
					Name:  "ledger",
					Usage: "the approval ledger: every request, decision, refusal, expiry and void, and whether its hash chain verifies",
					Description: `Entries are hash-chained; a damaged chain is reported (and fails the command
with ERR_PACK_APPROVAL_RECORD_CORRUPT) like ` + "`stella cache verify`" + ` would.

Examples:
   stella pack approvals ledger
   stella --output json pack approvals ledger`,
					Action: action(s.approvalsLedger),
				},
			},
		},
		{
			Name:  "plans",
			Usage: "plans saved with `stella pack plan --save`",
			Subcommands: []*cli.Command{
				{Name: "list", Usage: "saved plans", Action: action(s.plansList)},
				{Name: "show", Usage: "one saved plan: canonical JSON with --output json", ArgsUsage: "HASH", Action: action(s.plansShow)},
			},
		},
	}
}

func (s *session) requester(flag string) string {
	if flag != "" {
		return flag
	}
	name := "operator"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return name
	}
	return name + "@" + host
}

func verdict(v string) (approve.Verdict, error) {
	switch v {
	case "approve":
		return approve.Approve, nil
	case "reject":
		return approve.Reject, nil
	}
	return "", usageError(fmt.Sprintf("--decision %q: expected approve or reject", v))
}

func (s *session) packApprove(ctx context.Context, c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(fmt.Sprintf("pack approve: unexpected argument %q (subcommands: review, sign)", c.Args().First()))
	}
	if c.String("run") != "" && c.String("plan") != "" {
		return usageError("pack approve: give --run or --plan, not both (a run's plan is the one it runs)")
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	planArg := c.String("plan")
	if id := c.String("run"); id != "" {
		rec, err := runs.Open(st, filepath.Join(s.home, "runs"), s.now).Get(ctx, id)
		if err != nil {
			return err
		}
		planArg = rec.PlanHash.String()
		// A run's gates are decided for the run's tenant.
		s.tenant = rec.Tenant
	}
	if c.Bool("offline-request") && c.String("offline-response") != "" {
		return usageError("pack approve: --offline-request writes a request and --offline-response imports an answer; give one of them")
	}
	if planArg != "" && c.String("offline-response") == "" {
		if err := s.planVisible(ctx, st, planArg); err != nil {
			return err
		}
	}
	switch {
	case c.Bool("offline-request"):
		if planArg == "" {
			return usageError("pack approve --offline-request: --run RUN or --plan HASH is required (whose gate is asked for), and --gate")
		}
		if c.String("gate") == "" {
			return usageError("pack approve --offline-request: --gate is required: " + s.gatesOf(ctx, st, planArg))
		}
		// The output is checked before the request is recorded: a path that
		// cannot be written leaves no pending request and no ledger entry.
		check := c.String("out")
		if check == "" {
			check = "request.stella.tar" // in the current folder, named after the request below
		}
		if err := outputPath(check); err != nil {
			return err
		}
		ts, err := s.trustStore()
		if err != nil {
			return err
		}
		req, err := approve.NewRequest(ctx, st, approve.RequestOptions{PlanHash: planArg, Gate: c.String("gate"), Tenant: s.tenant, Requester: s.requester(c.String("requester")), Now: s.now(), Trust: ts})
		if err != nil {
			return err
		}
		out := c.String("out")
		if out == "" {
			out = "request-" + req.Doc.Nonce[:12] + ".stella.tar"
		}
		if err := s.prepareOutput(out); err != nil {
			return err
		}
		sum, err := approve.WriteRequestBundle(ctx, st, req, out)
		if err != nil {
			return err
		}
		res := struct {
			Request   digest.Digest `json:"request"`
			Ref       string        `json:"ref"`
			File      string        `json:"file"`
			SHA256    string        `json:"sha256"`
			PlanHash  digest.Digest `json:"planHash"`
			Gate      string        `json:"gate"`
			Tenant    string        `json:"tenant"`
			ExpiresAt string        `json:"expiresAt"`
		}{req.Descriptor.Digest, req.Ref, out, sum.Digest.Encoded(), req.Doc.PlanHash, req.Doc.Gate, req.Doc.Tenant, req.Doc.ExpiresAt.UTC().Format(time.RFC3339)}
		s.notifyEvents(ctx, []notify.Event{{ID: "approval-request:" + req.Descriptor.Digest.String(), Type: "pack.approval.requested", Time: s.now().UTC(),
			RunID: c.String("run"), Tenant: req.Doc.Tenant, Gate: req.Doc.Gate,
			Message: fmt.Sprintf("offline request %s for plan %s, expires %s", req.Descriptor.Digest, req.Doc.PlanHash, res.ExpiresAt)}})
		return s.emit(res, func(w io.Writer) {
			fmt.Fprintf(w, "wrote request %s to %s (sha256 %s)\n", res.Request, display.Line(res.File), res.SHA256)
			fmt.Fprintf(w, "plan %s, gate %s, tenant %s, expires %s\n", res.PlanHash, display.Line(res.Gate), display.Line(res.Tenant), res.ExpiresAt)
			fmt.Fprintf(w, "carry it to the approver; import the answer with: stella pack approve --offline-response FILE\n")
		})
	case c.String("offline-response") != "":
		ts, err := s.trustStore()
		if err != nil {
			return err
		}
		out, err := approve.Accept(ctx, st, c.String("offline-response"), approve.AcceptOptions{Trust: ts, Now: s.now(), ClockSkew: s.clockSkew()})
		// A refusal is in the ledger too: tell the hooks either way.
		defer s.notifyEvents(ctx, s.ledgerEvents(ctx, st))
		if err != nil {
			return err
		}
		return s.emitOutcome(ctx, out)
	case planArg != "" || c.String("gate") != "":
		if planArg == "" || c.String("gate") == "" || c.String("key") == "" {
			return usageError("pack approve: a local decision needs --run or --plan, --gate and --key")
		}
		v, err := verdict(c.String("decision"))
		if err != nil {
			return err
		}
		signer, err := s.loadSigner(ctx, c.String("key"))
		if err != nil {
			return err
		}
		ts, err := s.trustStore()
		if err != nil {
			return err
		}
		out, err := approve.Decide(ctx, st, approve.LocalDecision{PlanHash: planArg, Gate: c.String("gate"), Tenant: s.tenant,
			Signer: signer, Decision: v, Comment: c.String("comment"), Trust: ts, Now: s.now(), ClockSkew: s.clockSkew(), Requester: s.requester(c.String("requester"))})
		defer s.notifyEvents(ctx, s.ledgerEvents(ctx, st))
		if err != nil {
			return err
		}
		return s.emitOutcome(ctx, out)
	}
	return usageError("pack approve: give --offline-request, --offline-response FILE, or --run (or --plan), --gate and --key for a local decision (see --help)")
}

// gatesOf names the approval gates of the saved plan planArg, for a usage
// error that asks for one.
func (s *session) gatesOf(ctx context.Context, st *cache.Store, planArg string) string {
	sp, err := plans.Find(ctx, st, planArg)
	if err != nil {
		return "`stella pack plans show HASH` lists a plan's approval gates"
	}
	return savedGates(sp)
}

// savedGates names the approval gates of a saved plan.
func savedGates(sp *plans.Saved) string {
	gates := make([]string, len(sp.Approvals))
	for i, a := range sp.Approvals {
		gates[i] = display.Line(a.Gate)
	}
	if len(gates) == 0 {
		return fmt.Sprintf("plan %s has no approval gate", sp.Hash)
	}
	return fmt.Sprintf("plan %s's approval gates: %s", sp.Hash, strings.Join(gates, ", "))
}

// gateView is the JSON shape of a gate's state.
type gateView struct {
	Tenant    string                 `json:"tenant"`
	PlanHash  digest.Digest          `json:"planHash"`
	Gate      string                 `json:"gate"`
	Pack      string                 `json:"pack"`
	State     string                 `json:"state"`
	Approvals int                    `json:"approvals"`
	Required  int                    `json:"required"`
	Satisfied bool                   `json:"satisfied"`
	ExpiresAt string                 `json:"expiresAt,omitempty"`
	Decisions []approve.DecisionInfo `json:"decisions"`
	Requests  []approve.RequestInfo  `json:"requests"`
}

func viewOf(g approve.GateState) gateView {
	v := gateView{Tenant: g.Tenant, PlanHash: g.PlanHash, Gate: g.Gate, Pack: g.PackRef, State: g.String(), Approvals: g.Approvals,
		Required: g.Required, Satisfied: g.Satisfied, Decisions: g.Decisions, Requests: g.Requests}
	if !g.ExpiresAt.IsZero() {
		v.ExpiresAt = g.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if v.Decisions == nil {
		v.Decisions = []approve.DecisionInfo{}
	}
	if v.Requests == nil {
		v.Requests = []approve.RequestInfo{}
	}
	return v
}

func (s *session) emitOutcome(ctx context.Context, o *approve.Outcome) error {
	if !o.Duplicate {
		s.notifyApproval(ctx, o)
	}
	res := struct {
		Duplicate bool          `json:"duplicate"`
		Request   digest.Digest `json:"request"`
		Response  digest.Digest `json:"response"`
		KeyID     string        `json:"keyId"`
		KeyName   string        `json:"keyName"`
		Decision  string        `json:"decision"`
		Gate      gateView      `json:"gate"`
	}{o.Duplicate, o.Request, o.Response, o.KeyID, o.KeyName, string(o.Decision), viewOf(o.Gate)}
	return s.emit(res, func(w io.Writer) {
		if res.Duplicate {
			fmt.Fprintf(w, "already recorded: response %s (nothing changed)\n", res.Response)
		} else {
			fmt.Fprintf(w, "recorded %s by %s (%s) for gate %s\n", res.Decision, orDash(res.KeyName), display.Line(res.KeyID), display.Line(res.Gate.Gate))
		}
		fmt.Fprintf(w, "gate %s of plan %s: %s\n", display.Line(res.Gate.Gate), res.Gate.PlanHash, res.Gate.State)
	})
}

func (s *session) approveReview(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one REQUEST bundle"); err != nil {
		return err
	}
	sum, err := approve.Review(ctx, c.Args().First())
	if err != nil {
		return err
	}
	res := s.reviewView(sum)
	if res.Expired {
		s.warnf("request %s EXPIRED at %s: a response to it would be refused; ask the operator for a new request", res.Request, res.ExpiresAt)
	}
	// The steps, up to 100,000, are written as they are given, not held
	// again as JSON or as a table.
	return s.emitList(res, "steps", func(item func(any) error) error {
		return res.Steps.Each(func(st approve.StepSummary) error { return item(st) })
	}, func(w io.Writer) { renderReview(w, res) })
}

type reviewOut struct {
	Request      digest.Digest  `json:"request"`
	Pack         plan.PackRef   `json:"pack"`
	Tenant       string         `json:"tenant"`
	PlanHash     digest.Digest  `json:"planHash"`
	PlanVerified bool           `json:"planVerified"`
	Gate         string         `json:"gate"`
	Role         string         `json:"role"`
	MinApprovers int            `json:"minApprovers"`
	Reason       string         `json:"reason,omitempty"`
	Requester    string         `json:"requester"`
	RequestedAt  string         `json:"requestedAt"`
	ExpiresAt    string         `json:"expiresAt"`
	Expired      bool           `json:"expired"`
	Network      pack.Network   `json:"network"`
	Inputs       map[string]any `json:"inputs"`
	Secrets      []plan.Secret  `json:"secrets"`
	Steps        *approve.Steps `json:"-"` // "steps", last: a list of approve.StepSummary, by emitList
}

func (s *session) reviewView(sum *approve.Summary) reviewOut {
	return reviewOut{Request: sum.Request.Digest, Pack: sum.Pack, Tenant: sum.Tenant, PlanHash: sum.PlanHash, PlanVerified: true, Gate: sum.Gate,
		Role: sum.Role, MinApprovers: sum.MinApprovers, Reason: sum.Reason, Requester: sum.Requester,
		RequestedAt: sum.RequestedAt.UTC().Format(time.RFC3339), ExpiresAt: sum.ExpiresAt.UTC().Format(time.RFC3339),
		Expired: !s.now().Before(sum.ExpiresAt), Network: sum.Network,
		Inputs: sum.Inputs, Secrets: sum.Secrets, Steps: &sum.Steps}
}

func renderReview(w io.Writer, r reviewOut) {
	if r.Expired {
		fmt.Fprintf(w, "!!! EXPIRED at %s: a response to this request would be refused; ask the operator for a new one !!!\n", r.ExpiresAt)
	}
	fmt.Fprintf(w, "approval request %s\n", r.Request)
	fmt.Fprintf(w, "  bundle checksums and digests: verified; plan hash recomputed from the plan inside: %s\n", r.PlanHash)
	fmt.Fprintf(w, "  pack:      %s:%s (%s)\n", display.Line(r.Pack.Name), display.Line(r.Pack.Version), r.Pack.Digest)
	fmt.Fprintf(w, "  tenant:    %s\n  gate:      %s (role %s, %d approver(s))\n", display.Line(r.Tenant), display.Line(r.Gate), display.Line(r.Role), r.MinApprovers)
	if r.Reason != "" {
		fmt.Fprintf(w, "  reason:    %s\n", display.Line(r.Reason))
	}
	fmt.Fprintf(w, "  requester: %s at %s\n  expires:   %s\n", display.Line(r.Requester), r.RequestedAt, r.ExpiresAt)
	fmt.Fprintln(w, "  inputs:")
	for _, k := range sortedKeys(r.Inputs) {
		fmt.Fprintf(w, "    %s = %s\n", display.Line(k), display.Line(compactJSON(r.Inputs[k])))
	}
	fmt.Fprintln(w, "  secrets (references only):")
	for _, sec := range r.Secrets {
		fmt.Fprintf(w, "    %s from %s (used by %s)\n", display.Line(sec.Name), display.Line(sec.Source), display.Line(secret.StepsOrNone(sec.Steps)))
	}
	switch {
	case r.Network.Mode == pack.NetworkAllowlist:
		allow := make([]string, len(r.Network.Allowlist))
		for i, a := range r.Network.Allowlist {
			allow[i] = display.Line(a)
		}
		fmt.Fprintf(w, "  network:   allowlist: %s\n", strings.Join(allow, ", "))
	case r.Network.Mode != "":
		fmt.Fprintf(w, "  network:   %s\n", display.Line(string(r.Network.Mode)))
	}
	fmt.Fprintln(w, "  steps (argv quoted as a shell reads it back; $'…' words as bash reads them):")
	writeAligned(w, nil, func(fn func(cells ...string)) {
		r.Steps.Each(func(st approve.StepSummary) error {
			status, what := st.Status, display.Argv(st.Command)
			if st.Policy != "" {
				what = "policy: " + display.Line(st.Policy)
				if st.Decided != nil {
					status = "decided: fails"
					if *st.Decided {
						status = "decided: passes"
					}
				}
			}
			fn("    "+strings.Repeat("  ", st.Depth)+display.Line(st.ID), display.Line(st.Kind), display.Line(status), what)
			return nil
		})
	})
}

func (s *session) approveSign(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one REQUEST bundle"); err != nil {
		return err
	}
	if c.String("key") == "" {
		return usageError("pack approve sign: --key is required")
	}
	v, err := verdict(c.String("decision"))
	if err != nil {
		return err
	}
	sum, err := approve.Review(ctx, c.Args().First())
	if err != nil {
		return err
	}
	if !c.Bool("yes") {
		if err := s.confirm(s.reviewView(sum), v); err != nil {
			return err
		}
	}
	signer, err := s.loadSigner(ctx, c.String("key"))
	if err != nil {
		return err
	}
	resp, err := approve.Sign(ctx, sum, signer, approve.Decision{Verdict: v, Comment: c.String("comment")}, s.now())
	if err != nil {
		return err
	}
	out := c.String("out")
	if out == "" {
		out = "response-" + resp.Descriptor.Digest.Encoded()[:12] + ".stella.tar"
	}
	if err := s.prepareOutput(out); err != nil {
		return err
	}
	bs, err := approve.WriteResponseBundle(ctx, resp, out)
	if err != nil {
		return err
	}
	res := struct {
		Response digest.Digest `json:"response"`
		File     string        `json:"file"`
		SHA256   string        `json:"sha256"`
		Decision string        `json:"decision"`
		KeyID    string        `json:"keyId"`
		PlanHash digest.Digest `json:"planHash"`
		Gate     string        `json:"gate"`
	}{resp.Descriptor.Digest, out, bs.Digest.Encoded(), string(v), signer.ID(), sum.PlanHash, sum.Gate}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "signed %s of gate %s (plan %s) with key %s\n", res.Decision, res.Gate, res.PlanHash, res.KeyID)
		fmt.Fprintf(w, "wrote %s (sha256 %s): carry it back to the operator\n", res.File, res.SHA256)
	})
}

// confirm shows what is about to be signed and asks on the terminal.
func (s *session) confirm(r reviewOut, v approve.Verdict) error {
	tty, err := openTTY()
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return usageError("pack approve sign: no terminal to confirm on; review the request first and pass --yes")
	}
	defer tty.Close()
	// The tty gets what emit's text mode gets: every field rendered, and
	// the whole through display.Writer.
	dw := display.NewWriter(tty)
	renderReview(dw, r)
	fmt.Fprintf(dw, "\nSign %s for gate %s of plan %s? [y/N] ", strings.ToUpper(string(v)), display.Line(r.Gate), r.PlanHash)
	dw.Flush()
	line, _ := bufio.NewReader(tty).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return usageError("pack approve sign: not confirmed; nothing was signed")
	}
	return nil
}

func (s *session) approvalsList(ctx context.Context, c *cli.Context) error {
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	tenant := s.tenant
	if c.Bool("all-tenants") {
		tenant = approve.AllTenants
	}
	ts, err := s.trustStore()
	if err != nil {
		return err
	}
	gates, err := approve.Gates(ctx, st, ts, tenant, s.now())
	if err != nil {
		return err
	}
	out := make([]gateView, 0, len(gates))
	for _, g := range gates {
		out = append(out, viewOf(g))
	}
	return s.emit(out, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TENANT\tPLAN\tGATE\tPACK\tSTATE\tEXPIRES")
		for _, g := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", display.Line(g.Tenant), g.PlanHash.Encoded()[:12], display.Line(g.Gate), display.Line(g.Pack), display.Line(g.State), orDash(g.ExpiresAt))
		}
		tw.Flush()
	})
}

func (s *session) approvalsShow(ctx context.Context, c *cli.Context) error {
	if c.NArg() != 1 && c.NArg() != 2 {
		return usageError(c.Command.FullName() + ": expected PLAN and GATE (GATE may be left out when the plan has one approval gate)")
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	sp, err := plans.Find(ctx, st, c.Args().Get(0))
	if err != nil {
		return err
	}
	gate := c.Args().Get(1)
	if c.NArg() == 1 {
		if len(sp.Approvals) == 0 {
			return usageError(fmt.Sprintf("%s: %s: no gate to show", c.Command.FullName(), savedGates(sp)))
		}
		if len(sp.Approvals) > 1 {
			return usageError(fmt.Sprintf("%s: give the GATE: %s", c.Command.FullName(), savedGates(sp)))
		}
		gate = sp.Approvals[0].Gate
	}
	ts, err := s.trustStore()
	if err != nil {
		return err
	}
	g, err := approve.Gate(ctx, st, ts, s.tenant, string(sp.Hash), gate, s.now())
	if err != nil {
		return err
	}
	v := viewOf(*g)
	return s.emit(v, func(w io.Writer) {
		fmt.Fprintf(w, "gate %s of plan %s (%s), tenant %s: %s\n", display.Line(v.Gate), v.PlanHash, display.Line(v.Pack), display.Line(v.Tenant), display.Line(v.State))
		for _, d := range v.Decisions {
			fmt.Fprintf(w, "  %s by %s (%s) signed %s, imported %s: %q\n", display.Line(string(d.Decision)), orDash(d.KeyName), display.Line(d.KeyID),
				d.SignedAt.UTC().Format(time.RFC3339), d.ImportedAt.UTC().Format(time.RFC3339), d.Comment)
			if d.Void != "" {
				fmt.Fprintf(w, "    approval by %s no longer counts: %s\n", orDash(d.KeyName), d.Void)
			}
		}
		for _, r := range v.Requests {
			fmt.Fprintf(w, "  request %s by %s at %s: %s (expires %s)\n", r.Digest, display.Line(r.Requester), r.RequestedAt.UTC().Format(time.RFC3339), r.Status, r.ExpiresAt.UTC().Format(time.RFC3339))
		}
	})
}

func (s *session) approvalsLedger(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 0, "no arguments"); err != nil {
		return err
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	entries, err := approve.Ledger(ctx, st)
	if err != nil {
		return err
	}
	problems, err := approve.VerifyLedger(ctx, st)
	if err != nil {
		return err
	}
	res := struct {
		Entries  []approve.Entry   `json:"entries"`
		Problems []approve.Problem `json:"problems"`
	}{entries, problems}
	if res.Entries == nil {
		res.Entries = []approve.Entry{}
	}
	if res.Problems == nil {
		res.Problems = []approve.Problem{}
	}
	if err := s.emit(res, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tEVENT\tGATE\tKEY\tDETAIL")
		for _, e := range res.Entries {
			detail := e.Decision
			if e.Reason != "" {
				detail = strings.TrimSpace(detail + " " + e.Reason)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Event, orDash(e.Gate), orDash(e.KeyID), orDash(detail))
		}
		tw.Flush()
		if len(res.Problems) == 0 {
			fmt.Fprintf(w, "ledger of %d entries: hash chain verifies\n", len(res.Entries))
		}
	}); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("approval ledger: %d problem(s), first %s: %s: %w", len(problems), problems[0].Object, problems[0].Problem, approve.ErrRecordCorrupt)
	}
	return nil
}

func (s *session) plansList(ctx context.Context, _ *cli.Context) error {
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	saved, err := plans.List(ctx, st)
	if err != nil {
		return err
	}
	type row struct {
		Hash      digest.Digest `json:"hash"`
		Pack      string        `json:"pack"`
		Tenant    string        `json:"tenant"`
		SavedAt   string        `json:"savedAt"`
		Approvals []string      `json:"gates"`
	}
	out := make([]row, 0, len(saved))
	for _, p := range saved {
		r := row{Hash: p.Hash, Pack: p.PackRef, Tenant: p.Tenant, SavedAt: p.SavedAt.UTC().Format(time.RFC3339), Approvals: []string{}}
		for _, a := range p.Approvals {
			r.Approvals = append(r.Approvals, a.Gate)
		}
		out = append(out, r)
	}
	return s.emit(out, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PLAN HASH\tPACK\tTENANT\tSAVED\tGATES")
		for _, r := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Hash, display.Line(r.Pack), orDash(r.Tenant), r.SavedAt, orDash(strings.Join(r.Approvals, ",")))
		}
		tw.Flush()
	})
}

func (s *session) plansShow(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one plan HASH"); err != nil {
		return err
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	// The plan is read as a stream (a plan of 100,000 steps is 26 MiB of
	// JSON and ten times that parsed), checked whole before anything is
	// printed: the JSON is its bytes, read again; the text a line a step.
	if s.output == outputJSON {
		p, _, err := plans.Walk(ctx, st, c.Args().First(), func(*plan.Step, int) struct{} { return struct{}{} }, func(struct{}) {})
		if err != nil {
			return err
		}
		if err := plans.WriteCanonical(ctx, st, p, s.stdout); err != nil {
			return err
		}
		_, err = io.WriteString(s.stdout, "\n")
		return err
	}
	var lines []string
	p, _, err := plans.Walk(ctx, st, c.Args().First(), func(st *plan.Step, depth int) string {
		return fmt.Sprintf("  %s%s %s %s\n", strings.Repeat("  ", depth), display.Line(st.ID), display.Line(string(st.Kind)), display.Line(string(st.Status)))
	}, func(line string) { lines = append(lines, line) })
	if err != nil {
		return err
	}
	w := display.NewWriter(s.stdout)
	fmt.Fprintf(w, "plan %s\npack %s (%s)\ntenant %s\nsaved %s\n", p.Hash, display.Line(p.PackRef), p.Pack.Digest, orDash(p.Tenant), p.SavedAt.UTC().Format(time.RFC3339))
	for _, a := range p.Approvals {
		fmt.Fprintf(w, "gate %s: approval %s, role %s, %d approver(s), expires after %s\n", display.Line(a.Gate), display.Line(a.Approval), display.Line(a.Role), a.MinApprovers, display.Line(fmt.Sprint(a.ExpiresAfter)))
	}
	for _, line := range lines {
		io.WriteString(w, line)
	}
	return w.Flush()
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// planVisible refuses to approve a gate of a saved plan for a tenant its
// pack is not visible to (admission.Visible, through LoadPack). Other
// problems of the plan or its pack are approve's own to report.
func (s *session) planVisible(ctx context.Context, st *cache.Store, planArg string) error {
	sp, perr := plans.Find(ctx, st, planArg)
	if perr != nil {
		return nil // approve reports an unknown plan itself
	}
	pol, err := s.inspectionPolicy()
	if err != nil {
		return err
	}
	if _, err := pol.LoadPack(ctx, st, sp.PackRef); errors.Is(err, admission.ErrNotVisible) {
		return fmt.Errorf("gates of plan %s: %w", sp.Hash, err)
	}
	return nil
}

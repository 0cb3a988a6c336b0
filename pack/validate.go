package pack

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var (
	nameRe      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	tagRe       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	tenantRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	inputNameRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,62}$`)
	secretRe    = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	stepIDRe    = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	envNameRe   = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,127}$`)
	roleRe      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.]{0,62}$`)
	hostRe      = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	sourceRe    = regexp.MustCompile(`^(vault|env):[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)
)

// Bounds of a manifest.
const (
	MaxSteps       = 10000
	MaxLoopCount   = 10000
	MaxRetries     = 10
	MaxApprovers   = 16
	MaxExpiresTime = 90 * 24 * time.Hour
)

var inputTypes = map[string]bool{TypeString: true, TypeInteger: true, TypeNumber: true, TypeBoolean: true, TypeArray: true, TypeObject: true}

// validate checks the semantics of a parsed manifest and compiles the input
// schemas it names.
func validate(p *Pack, ps *problems) {
	m := p.Manifest
	if m.APIVersion != APIVersion {
		ps.at("apiVersion", "apiVersion is %q: expected %q", m.APIVersion, APIVersion)
	}
	if m.Kind != Kind {
		ps.at("kind", "kind is %q: expected %q", m.Kind, Kind)
	}
	validateMetadata(&m.Metadata, ps)
	validateInputs(p, ps)
	secrets := validateSecrets(m.Spec.Secrets, ps)
	approvals := validateApprovals(m.Spec.Approvals, ps)
	validateSandbox(&m.Spec.Sandbox, ps)
	validateFailure(&m.Spec.Failure, ps)
	v := &stepValidator{ps: ps, secrets: secrets, approvals: approvals, ids: map[string]string{}}
	if len(m.Spec.Steps) == 0 {
		ps.at("spec.steps", "no steps: a pack needs at least one step")
	}
	v.steps(m.Spec.Steps, "spec.steps", scope{})
	if v.count > MaxSteps {
		ps.at("spec.steps", "%d steps, more than the %d allowed", v.count, MaxSteps)
	}
	for _, r := range v.stepRefs {
		if _, ok := v.ids[r.id]; !ok {
			ps.at(r.path, "expression reads steps.%s, but no step has id %q", r.id, r.id)
		}
	}
	validateOutputs(m.Spec.Outputs, v, ps)
}

func validateMetadata(md *Metadata, ps *problems) {
	switch {
	case md.Name == "":
		ps.at("metadata.name", "missing: expected a lowercase name such as \"rotate-registry-credentials\"")
	case !nameRe.MatchString(md.Name):
		ps.at("metadata.name", "%q is not a valid name: expected lowercase letters, digits and '-', at most 63 characters", md.Name)
	}
	if md.Version == "" {
		ps.at("metadata.version", "missing: expected a semantic version such as \"1.0.0\"")
	} else if _, err := semver.StrictNewVersion(md.Version); err != nil {
		ps.at("metadata.version", "%q is not a semantic version (MAJOR.MINOR.PATCH, e.g. \"1.4.2\")", md.Version)
	}
	if strings.TrimSpace(md.Description) == "" {
		ps.at("metadata.description", "missing: say in one line what the pack does")
	}
	seen := map[string]bool{}
	for i, t := range md.Tags {
		p := fmt.Sprintf("metadata.tags[%d]", i)
		if !tagRe.MatchString(t) {
			ps.at(p, "tag %q: expected lowercase letters, digits, '.', '_' or '-'", t)
		}
		if seen[t] {
			ps.at(p, "duplicate tag %q", t)
		}
		seen[t] = true
	}
	seenT := map[string]bool{}
	for i, t := range md.TenantVisibility {
		p := fmt.Sprintf("metadata.tenantVisibility[%d]", i)
		if t != "*" && !tenantRe.MatchString(t) {
			ps.at(p, "tenant %q: expected a lowercase tenant name or \"*\" for all tenants", t)
		}
		if seenT[t] {
			ps.at(p, "duplicate tenant %q", t)
		}
		seenT[t] = true
	}
	for i, mt := range md.Maintainers {
		p := fmt.Sprintf("metadata.maintainers[%d]", i)
		if strings.TrimSpace(mt.Name) == "" {
			ps.at(p+".name", "missing maintainer name")
		}
		if mt.Email != "" && (!strings.Contains(mt.Email, "@") || strings.ContainsAny(mt.Email, " \t<>")) {
			ps.at(p+".email", "%q is not an email address", mt.Email)
		}
	}
	if md.Created != "" {
		if _, err := time.Parse(time.RFC3339, md.Created); err != nil {
			ps.at("metadata.created", "%q is not an RFC 3339 time such as \"2026-01-02T15:04:05Z\"", md.Created)
		}
	}
}

func validateInputs(p *Pack, ps *problems) {
	seen := map[string]bool{}
	for i := range p.Manifest.Spec.Inputs {
		in := &p.Manifest.Spec.Inputs[i]
		base := fmt.Sprintf("spec.inputs[%d]", i)
		if !inputNameRe.MatchString(in.Name) {
			ps.at(base+".name", "input name %q: expected a letter then letters, digits or '_'", in.Name)
		}
		if seen[in.Name] {
			ps.at(base+".name", "duplicate input %q", in.Name)
		}
		seen[in.Name] = true
		if !inputTypes[in.Type] {
			ps.at(base+".type", "type %q: expected one of string, integer, number, boolean, array, object", in.Type)
			continue
		}
		if in.Required && in.Default != nil {
			ps.at(base+".default", "input %q is required and has a default: drop one of them", in.Name)
		}
		if in.Default != nil {
			if msg := CheckType(in.Type, in.Default); msg != "" {
				ps.at(base+".default", "default of %q: %s", in.Name, msg)
			}
		}
		if in.Schema != "" {
			sch, msg := compileSchema(p, in.Schema)
			if msg != "" {
				ps.at(base+".schema", "%s", msg)
				continue
			}
			p.schemas[in.Name] = sch
			if in.Default != nil {
				if err := sch.Validate(in.Default); err != nil {
					ps.at(base+".default", "default of %q does not match %s: %s", in.Name, in.Schema, schemaErrorText(err))
				}
			}
		}
	}
}

// CheckType returns "" if v (a JSON value) has the declared input type, else
// what is wrong.
func CheckType(typ string, v any) string {
	switch typ {
	case TypeString:
		if _, ok := v.(string); ok {
			return ""
		}
	case TypeNumber:
		if _, ok := v.(float64); ok {
			return ""
		}
	case TypeInteger:
		if f, ok := v.(float64); ok {
			if f == float64(int64(f)) && f >= -(1<<53) && f <= 1<<53 {
				return ""
			}
			return fmt.Sprintf("expected an integer, got %s", strconv.FormatFloat(f, 'g', -1, 64))
		}
	case TypeBoolean:
		if _, ok := v.(bool); ok {
			return ""
		}
	case TypeArray:
		if _, ok := v.([]any); ok {
			return ""
		}
	case TypeObject:
		if _, ok := v.(map[string]any); ok {
			return ""
		}
	}
	return fmt.Sprintf("expected %s, got %s", article(typ), jsonTypeName(v))
}

func article(typ string) string {
	switch typ {
	case TypeInteger, TypeArray, TypeObject:
		return "an " + typ
	}
	return "a " + typ
}

func jsonTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

const schemaBase = "file:///pack/"

// packLoader serves schema files from the pack and refuses anything else.
type packLoader struct{ p *Pack }

func (l packLoader) Load(u string) (any, error) {
	if !strings.HasPrefix(u, schemaBase) {
		return nil, fmt.Errorf("%s is outside the pack folder", u)
	}
	rel := strings.TrimPrefix(u, schemaBase)
	if rel == "" || strings.Contains(rel, "..") || !strings.HasPrefix(rel, SchemasDir+"/") {
		return nil, fmt.Errorf("%s is outside the pack's %s/ folder", rel, SchemasDir)
	}
	b, err := readLimited(l.p.fsys, rel, MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", rel, err)
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

func compileSchema(p *Pack, ref string) (*jsonschema.Schema, string) {
	clean := path.Clean(ref)
	if path.IsAbs(ref) || strings.HasPrefix(clean, "../") || clean == ".." || strings.Contains(ref, "\\") {
		return nil, fmt.Sprintf("schema %q escapes the pack folder: expected a path under %s/", ref, SchemasDir)
	}
	if u, err := url.Parse(ref); err == nil && u.Scheme != "" {
		return nil, fmt.Sprintf("schema %q is a URL: expected a file under %s/ (no network lookups)", ref, SchemasDir)
	}
	if !strings.HasPrefix(clean, SchemasDir+"/") {
		return nil, fmt.Sprintf("schema %q is not under %s/", ref, SchemasDir)
	}
	if _, ok := p.File(clean); !ok {
		return nil, fmt.Sprintf("schema file %s does not exist in the pack", clean)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(packLoader{p})
	sch, err := c.Compile(schemaBase + clean)
	if err != nil {
		return nil, fmt.Sprintf("schema %s: %s", clean, oneLine(err.Error()))
	}
	return sch, ""
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", "; ")
	return strings.Join(strings.Fields(s), " ")
}

var englishPrinter = message.NewPrinter(language.English)

func schemaErrorText(err error) string {
	if ve, ok := err.(*jsonschema.ValidationError); ok {
		var leaves []string
		var walk func(e *jsonschema.ValidationError)
		walk = func(e *jsonschema.ValidationError) {
			if len(e.Causes) == 0 {
				loc := "/" + strings.Join(e.InstanceLocation, "/")
				leaves = append(leaves, fmt.Sprintf("at %s: %s", loc, e.ErrorKind.LocalizedString(englishPrinter)))
				return
			}
			for _, c := range e.Causes {
				walk(c)
			}
		}
		walk(ve)
		return strings.Join(leaves, "; ")
	}
	return oneLine(err.Error())
}

func validateSecrets(secrets []Secret, ps *problems) map[string]bool {
	names := map[string]bool{}
	fileVars, envVars := map[string]string{}, map[string]string{}
	for i, s := range secrets {
		base := fmt.Sprintf("spec.secrets[%d]", i)
		if other, ok := fileVars[SecretEnvName(s.Name)]; ok && other != s.Name {
			ps.at(base+".name", "secret %q and secret %q would share the variable STELLA_SECRET_%s_FILE: rename one", other, s.Name, SecretEnvName(s.Name))
		}
		fileVars[SecretEnvName(s.Name)] = s.Name
		if s.Env != "" {
			switch {
			case !envNameRe.MatchString(s.Env):
				ps.at(base+".env", "env %q: expected an environment variable name in upper case (A-Z, 0-9, '_')", s.Env)
			case reservedEnv(s.Env):
				ps.at(base+".env", "env %q: reserved for the runner (PATH, HOME, TMPDIR, LANG, LD_*, STELLA_*)", s.Env)
			case envVars[s.Env] != "":
				ps.at(base+".env", "env %q is also the variable of secret %q", s.Env, envVars[s.Env])
			}
			envVars[s.Env] = s.Name
		}
		if !secretRe.MatchString(s.Name) {
			ps.at(base+".name", "secret name %q: expected lowercase letters, digits, '_' or '-'", s.Name)
		}
		if names[s.Name] {
			ps.at(base+".name", "duplicate secret %q", s.Name)
		}
		names[s.Name] = true
		if s.Source == "" {
			ps.at(base+".source", "missing source: expected \"vault:<name>\" (or \"env:<NAME>\" outside sealed mode)")
		} else if !sourceRe.MatchString(s.Source) {
			ps.at(base+".source", "source %q: expected \"vault:<name>\" or \"env:<NAME>\"", s.Source)
		}
		if s.Scope != "" && s.Scope != ScopeStep && s.Scope != ScopeRun {
			ps.at(base+".scope", "scope %q: expected \"step\" (only steps that list it) or \"run\" (every step)", s.Scope)
		}
	}
	return names
}

// reservedEnv: variables the runner sets or the loader reads.
func reservedEnv(name string) bool {
	switch name {
	case "PATH", "HOME", "TMPDIR", "LANG", "PWD", "SHELL", "USER":
		return true
	}
	return strings.HasPrefix(name, "LD_") || strings.HasPrefix(name, "STELLA_")
}

func validateApprovals(approvals []Approval, ps *problems) map[string]bool {
	ids := map[string]bool{}
	for i, a := range approvals {
		base := fmt.Sprintf("spec.approvals[%d]", i)
		if !stepIDRe.MatchString(a.ID) {
			ps.at(base+".id", "approval id %q: expected lowercase letters, digits and '-'", a.ID)
		}
		if ids[a.ID] {
			ps.at(base+".id", "duplicate approval id %q", a.ID)
		}
		ids[a.ID] = true
		if a.Role == "" {
			ps.at(base+".role", "missing role: expected the role an approver must hold, e.g. \"Packs.Approve\"")
		} else if !roleRe.MatchString(a.Role) {
			ps.at(base+".role", "role %q: expected letters, digits and '.'", a.Role)
		}
		if a.MinApprovers < 0 || a.MinApprovers > MaxApprovers {
			ps.at(base+".minApprovers", "minApprovers %d: expected 1 to %d", a.MinApprovers, MaxApprovers)
		}
		if a.ExpiresAfter < 0 || time.Duration(a.ExpiresAfter) > MaxExpiresTime {
			ps.at(base+".expiresAfter", "expiresAfter %s: expected a positive duration of at most 90 days", time.Duration(a.ExpiresAfter))
		}
	}
	return ids
}

// ApproverRoleProblems reports each approval whose role cannot approve at
// the site: isApprover says which roles can (the site's trust store knows;
// without one, only "Packs.Approve"). The format itself allows any role;
// whether it approves is the site's decision, so this is checked apart from
// Load, by `stella pack validate`, and again when an approval is asked for
// or accepted. approverRoles names the roles that can, for the message.
func (p *Pack) ApproverRoleProblems(isApprover func(role string) bool, approverRoles []string) []Problem {
	ps := &problems{file: ManifestFile, index: p.positions}
	for i, a := range p.Manifest.Spec.Approvals {
		if a.Role == "" || isApprover(a.Role) {
			continue
		}
		never := ""
		if a.Role == "publisher" || a.Role == "Packs.Run" {
			never = "; publisher and Packs.Run never approve"
		}
		ps.at(fmt.Sprintf("spec.approvals[%d].role", i), "role %q is not an approver role at this site (approver roles: %s)%s",
			a.Role, strings.Join(approverRoles, ", "), never)
	}
	return ps.list
}

func validateSandbox(sb *Sandbox, ps *problems) {
	switch sb.Network.Mode {
	case "", NetworkNone:
		if len(sb.Network.Allowlist) > 0 {
			ps.at("spec.sandbox.network.allowlist", "an allowlist needs mode \"allowlist\" (mode is %q)", orDefault(sb.Network.Mode, NetworkNone))
		}
	case NetworkAllowlist:
		if len(sb.Network.Allowlist) == 0 {
			ps.at("spec.sandbox.network.allowlist", "mode \"allowlist\" needs at least one host")
		}
	default:
		ps.at("spec.sandbox.network.mode", "network mode %q: expected \"none\" or \"allowlist\"", sb.Network.Mode)
	}
	for i, h := range sb.Network.Allowlist {
		if msg := CheckAllowlistEntry(h); msg != "" {
			ps.at(fmt.Sprintf("spec.sandbox.network.allowlist[%d]", i), "%s", msg)
		}
	}
	if sb.Limits.CPU < 0 {
		ps.at("spec.sandbox.limits.cpu", "cpu must not be negative")
	}
	if sb.Limits.MemoryMiB < 0 {
		ps.at("spec.sandbox.limits.memoryMiB", "memoryMiB must not be negative")
	}
	if sb.Limits.Pids < 0 {
		ps.at("spec.sandbox.limits.pids", "pids must not be negative")
	}
	if sb.Limits.Timeout < 0 {
		ps.at("spec.sandbox.limits.timeout", "timeout must be positive")
	}
}

// CheckAllowlistEntry says what is wrong with one network allowlist entry
// (host, host:port, *.domain or an IP address, with an optional port), or
// "" when nothing is.
func CheckAllowlistEntry(h string) string {
	host := h
	if hh, port, err := net.SplitHostPort(h); err == nil {
		host = hh
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("allowlist entry %q: port must be 1-65535", h)
		}
	}
	if strings.HasPrefix(host, "*.") {
		host = host[2:]
	}
	if net.ParseIP(host) != nil {
		return ""
	}
	if !hostRe.MatchString(host) {
		return fmt.Sprintf("allowlist entry %q: expected host, host:port, *.domain or an IP address", h)
	}
	return ""
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func validateFailure(f *Failure, ps *problems) {
	if f.Retries < 0 || f.Retries > MaxRetries {
		ps.at("spec.failure.retries", "retries %d: expected 0 to %d", f.Retries, MaxRetries)
	}
	if f.Backoff.Initial < 0 {
		ps.at("spec.failure.backoff.initial", "must be positive")
	}
	if f.Backoff.Max < 0 || (f.Backoff.Max != 0 && f.Backoff.Max < f.Backoff.Initial) {
		ps.at("spec.failure.backoff.max", "max %s is below initial %s", time.Duration(f.Backoff.Max), time.Duration(f.Backoff.Initial))
	}
	if f.Backoff.Multiplier != 0 && (f.Backoff.Multiplier < 1 || f.Backoff.Multiplier > 10) {
		ps.at("spec.failure.backoff.multiplier", "multiplier %g: expected 1 to 10", f.Backoff.Multiplier)
	}
}

func validateOutputs(outs []Output, v *stepValidator, ps *problems) {
	seen := map[string]bool{}
	for i, o := range outs {
		base := fmt.Sprintf("spec.outputs[%d]", i)
		if !inputNameRe.MatchString(o.Name) {
			ps.at(base+".name", "output name %q: expected a letter then letters, digits or '_'", o.Name)
		}
		if seen[o.Name] {
			ps.at(base+".name", "duplicate output %q", o.Name)
		}
		seen[o.Name] = true
		switch {
		case o.From == "" && o.Path == "":
			ps.at(base, "output %q needs \"from\" (an expression) or \"path\" (a file)", o.Name)
		case o.From != "" && o.Path != "":
			ps.at(base, "output %q has both \"from\" and \"path\": keep one", o.Name)
		case o.From != "":
			v.expr(o.From, base+".from", scope{})
		default:
			if c := path.Clean(o.Path); path.IsAbs(o.Path) || c == ".." || strings.HasPrefix(c, "../") {
				ps.at(base+".path", "path %q escapes the run's work folder", o.Path)
			}
		}
	}
}

// scope tells what an expression may read where it stands.
type scope struct {
	inIteration bool // inside a map or loop: item and index are defined
}

type stepRef struct{ id, path string }

type stepValidator struct {
	ps        *problems
	secrets   map[string]bool
	approvals map[string]bool
	ids       map[string]string // step id → path of its definition
	stepRefs  []stepRef
	count     int
}

func (v *stepValidator) expr(src, p string, sc scope) *Expr {
	e, err := CompileExpr(src)
	if err != nil {
		v.ps.at(p, "expression %q: %v", src, err)
		return nil
	}
	v.checkReads(e.Roots, p, sc)
	for _, id := range stepIDsRead(src) {
		v.stepRefs = append(v.stepRefs, stepRef{id: id, path: p})
	}
	return e
}

func (v *stepValidator) template(src, p string, sc scope) {
	t, err := CompileTemplate(src)
	if err != nil {
		v.ps.at(p, "%v", err)
		return
	}
	for _, part := range t.parts {
		if part.expr != nil {
			v.checkReads(part.expr.Roots, p, sc)
			for _, id := range stepIDsRead(part.expr.Source) {
				v.stepRefs = append(v.stepRefs, stepRef{id: id, path: p})
			}
		}
	}
}

func (v *stepValidator) checkReads(roots []string, p string, sc scope) {
	for _, r := range roots {
		if (r == "item" || r == "index") && !sc.inIteration {
			v.ps.at(p, "%q is only defined inside a map or loop", r)
		}
	}
}

func (v *stepValidator) steps(steps []Step, base string, sc scope) {
	for i := range steps {
		v.step(&steps[i], fmt.Sprintf("%s[%d]", base, i), sc)
	}
}

func (v *stepValidator) step(s *Step, p string, sc scope) {
	v.count++
	switch {
	case s.ID == "":
		v.ps.at(p+".id", "missing step id")
	case !stepIDRe.MatchString(s.ID):
		v.ps.at(p+".id", "step id %q: expected a lowercase letter then lowercase letters, digits and '-', at most 63 characters", s.ID)
	default:
		if first, dup := v.ids[s.ID]; dup {
			v.ps.at(p+".id", "duplicate step id %q (first defined at %s)", s.ID, first)
		} else {
			v.ids[s.ID] = p
		}
	}
	if s.When != "" {
		v.expr(s.When, p+".when", sc)
	}
	if s.Timeout < 0 {
		v.ps.at(p+".timeout", "timeout must be positive")
	}
	kind := s.Kind()
	if kind == "" {
		n := 0
		for _, set := range []bool{s.Run != nil, s.Parallel != nil, s.Map != nil, s.Loop != nil, s.Conditional != nil, s.Gate != nil} {
			if set {
				n++
			}
		}
		switch {
		case n == 0:
			v.ps.at(p, "step %q has no body: expected one of run, parallel, map, loop, conditional, gate", s.ID)
		case n > 1:
			v.ps.at(p, "step %q has %d bodies: expected exactly one of run, parallel, map, loop, conditional, gate", s.ID, n)
		default: // a gate with neither or both of approval and policy
			v.ps.at(p+".gate", "gate of step %q: expected exactly one of approval or policy", s.ID)
		}
	}
	switch {
	case s.Run != nil:
		v.run(s.Run, p+".run", sc)
	case s.Parallel != nil:
		if s.Parallel.MaxParallel < 0 {
			v.ps.at(p+".parallel.maxParallel", "maxParallel must not be negative")
		}
		v.body(s.Parallel.Steps, p+".parallel.steps", sc)
	case s.Map != nil:
		if s.Map.Items == "" {
			v.ps.at(p+".map.items", "map needs items: an expression giving a list")
		} else {
			v.expr(s.Map.Items, p+".map.items", sc)
		}
		if s.Map.MaxParallel < 0 {
			v.ps.at(p+".map.maxParallel", "maxParallel must not be negative")
		}
		v.body(s.Map.Steps, p+".map.steps", scope{inIteration: true})
	case s.Loop != nil:
		switch {
		case s.Loop.Items == "" && s.Loop.Count == 0:
			v.ps.at(p+".loop", "loop needs items (an expression giving a list) or count")
		case s.Loop.Items != "" && s.Loop.Count != 0:
			v.ps.at(p+".loop", "loop has both items and count: keep one")
		case s.Loop.Items != "":
			v.expr(s.Loop.Items, p+".loop.items", sc)
		case s.Loop.Count < 0 || s.Loop.Count > MaxLoopCount:
			v.ps.at(p+".loop.count", "count %d: expected 1 to %d", s.Loop.Count, MaxLoopCount)
		}
		v.body(s.Loop.Steps, p+".loop.steps", scope{inIteration: true})
	case s.Conditional != nil:
		if len(s.Conditional.Branches) == 0 {
			v.ps.at(p+".conditional.branches", "conditional needs at least one branch")
		}
		for i, b := range s.Conditional.Branches {
			bp := fmt.Sprintf("%s.conditional.branches[%d]", p, i)
			if b.When == "" {
				v.ps.at(bp+".when", "branch needs a when expression")
			} else {
				v.expr(b.When, bp+".when", sc)
			}
			v.body(b.Steps, bp+".steps", sc)
		}
		if s.Conditional.Else != nil {
			v.body(s.Conditional.Else, p+".conditional.else", sc)
		}
	case s.Gate != nil:
		if s.Gate.Approval != "" && !v.approvals[s.Gate.Approval] {
			v.ps.at(p+".gate.approval", "gate names approval %q, which spec.approvals does not declare", s.Gate.Approval)
		}
		if s.Gate.Policy != nil {
			if s.Gate.Policy.Expr == "" {
				v.ps.at(p+".gate.policy.expr", "policy needs expr: an expression that must hold")
			} else {
				v.expr(s.Gate.Policy.Expr, p+".gate.policy.expr", sc)
			}
		}
	}
}

func (v *stepValidator) body(steps []Step, p string, sc scope) {
	if len(steps) == 0 {
		v.ps.at(p, "no steps: expected at least one")
		return
	}
	v.steps(steps, p, sc)
}

func (v *stepValidator) run(r *Run, p string, sc scope) {
	if len(r.Command) == 0 {
		v.ps.at(p+".command", "run needs a command: a list such as [\"sh\", \"scripts/do.sh\"]")
	}
	for i, a := range r.Command {
		v.template(a, fmt.Sprintf("%s.command[%d]", p, i), sc)
	}
	for k, val := range r.Env {
		ep := p + ".env." + k
		if !envNameRe.MatchString(k) {
			v.ps.at(ep, "environment name %q: expected upper-case letters, digits and '_'", k)
		}
		if strings.HasPrefix(k, "STELLA_") {
			v.ps.at(ep, "environment name %q: the STELLA_ prefix is reserved", k)
		}
		v.template(val, ep, sc)
	}
	seen := map[string]bool{}
	for i, s := range r.Secrets {
		sp := fmt.Sprintf("%s.secrets[%d]", p, i)
		if !v.secrets[s] {
			v.ps.at(sp, "step uses secret %q, which spec.secrets does not declare", s)
		}
		if seen[s] {
			v.ps.at(sp, "secret %q listed twice", s)
		}
		seen[s] = true
	}
	if r.Workdir != "" {
		if c := path.Clean(r.Workdir); path.IsAbs(r.Workdir) || c == ".." || strings.HasPrefix(c, "../") {
			v.ps.at(p+".workdir", "workdir %q escapes the run's work folder", r.Workdir)
		}
	}
	for i, o := range r.Outputs {
		if !inputNameRe.MatchString(o) {
			v.ps.at(fmt.Sprintf("%s.outputs[%d]", p, i), "output name %q: expected a letter then letters, digits or '_'", o)
		}
	}
}

var stepsReadRe = regexp.MustCompile(`(?:^|[^A-Za-z0-9_."])steps\.([a-z][a-z0-9-]*|"[^"]+")`)

// stepIDsRead lists the step ids an expression reads through steps.<id>.
func stepIDsRead(src string) []string {
	var ids []string
	for _, m := range stepsReadRe.FindAllStringSubmatch(src, -1) {
		ids = append(ids, strings.Trim(m[1], `"`))
	}
	return ids
}

// ValidRef reports whether ref is a pack's <name>:<version>: a valid pack
// name and a strict semantic version.
func ValidRef(ref string) bool {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || !nameRe.MatchString(ref[:i]) {
		return false
	}
	_, err := semver.StrictNewVersion(ref[i+1:])
	return err == nil
}

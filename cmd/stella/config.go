package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"stellaops.io/stella/metrics"
	"stellaops.io/stella/notify"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/traces/otlp"
)

const configFile = "config.yaml"

// Config is <home>/config.yaml: defaults for every command. Flags and
// environment variables override it. Unknown keys are an error, so a typo
// never silently weakens a policy.
type Config struct {
	// Output is the default --output (text or json).
	Output string `yaml:"output" json:"output,omitempty"`
	// Tenant is the default --tenant.
	Tenant string `yaml:"tenant" json:"tenant,omitempty"`
	// Sealed turns sealed mode on for every command.
	Sealed bool `yaml:"sealed" json:"sealed,omitempty"`
	// LockTimeout bounds how long a command waits for the cache lock.
	LockTimeout time.Duration `yaml:"lockTimeout" json:"lockTimeout,omitempty"`
	// RequireSignature refuses unsigned or untrusted artifacts on import.
	RequireSignature bool `yaml:"requireSignature" json:"requireSignature,omitempty"`
	// Vault is the path of the sealed vault file.
	Vault string `yaml:"vault" json:"vault,omitempty"`
	// RunKey is the default runner key of `stella pack runs export`: a
	// key file or vault:NAME.
	RunKey string `yaml:"runKey" json:"runKey,omitempty"`
	// RunRetention is how long `stella pack runs gc` keeps a finished run,
	// from its end: a Go duration or whole days ("720h", "30d").
	RunRetention string `yaml:"runRetention" json:"runRetention,omitempty"`
	// ClockSkew is the allowance when checking approval expiry.
	ClockSkew time.Duration `yaml:"clockSkew" json:"clockSkew,omitempty"`
	// Registries configures registry access; in sealed mode only these hosts
	// may be contacted.
	Registries []RegistryConfig `yaml:"registries" json:"registries,omitempty"`
	// StepAllowlist is what steps of packs in mode allowlist may reach in
	// sealed mode: a pack's destination must match an entry here too
	// (same forms as sandbox.network.allowlist).
	StepAllowlist []string `yaml:"stepAllowlist" json:"stepAllowlist,omitempty"`

	// Metrics (issue 14, docs/operations/metrics.md).

	// MetricsTextfile is where `stella pack run` and `stella pack runs
	// resume` write the pack_* metrics after each run, for
	// node_exporter's textfile collector: a file name ending in .prom.
	MetricsTextfile string `yaml:"metricsTextfile" json:"metricsTextfile,omitempty"`

	// Notifications (docs/operations/notifications.md).
	Notify NotifyConfig `yaml:"notify" json:"notify,omitempty"`

	// Traces (docs/operations/traces.md).
	Traces TracesConfig `yaml:"traces" json:"traces,omitempty"`
}

// TracesConfig is the OpenTelemetry collector runs' spans go to; with no
// endpoint, none are sent.
type TracesConfig struct {
	// Endpoint is the collector's OTLP/HTTP base URL, such as
	// http://127.0.0.1:4318 (spans are posted to /v1/traces).
	Endpoint string `yaml:"endpoint" json:"endpoint,omitempty"`
	// CAFile, CertFile and KeyFile are for an https endpoint: the CA to
	// trust, and a client certificate and key when the collector asks.
	CAFile   string `yaml:"caFile" json:"caFile,omitempty"`
	CertFile string `yaml:"certFile" json:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile" json:"keyFile,omitempty"`
	// HeadersFile names a file of "Name: value" lines: headers sent with
	// every request to the collector, such as an Authorization header.
	// Values are credentials: they are read when spans are sent and never
	// shown.
	HeadersFile string `yaml:"headersFile" json:"headersFile,omitempty"`
	// Timeout bounds each request, and the wait at the end of a command
	// for spans still queued (default 10s).
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// SealedAllowlist are the collector hosts (host or host:port, as in
	// the URL) spans may be sent to in sealed mode.
	SealedAllowlist []string `yaml:"sealedAllowlist" json:"sealedAllowlist,omitempty"`
}

// NotifyConfig is where run, approval and chaos events are delivered, and
// how hard stella tries.
type NotifyConfig struct {
	// Hooks receive the events of the spool: a command (the event as JSON
	// on stdin) or a webhook URL.
	Hooks []notify.Hook `yaml:"hooks" json:"hooks,omitempty"`
	// MaxAttempts before an event goes to the dead letters (default 5).
	MaxAttempts int `yaml:"maxAttempts" json:"maxAttempts,omitempty"`
	// RetryInitial and RetryMax are the backoff between attempts
	// (default 1s doubling to 30s).
	RetryInitial time.Duration `yaml:"retryInitial" json:"retryInitial,omitempty"`
	RetryMax     time.Duration `yaml:"retryMax" json:"retryMax,omitempty"`
	// DeliverWithin bounds the delivery a command does before it exits
	// (default 10s); what is left waits for the next command or
	// `stella notify deliver`.
	DeliverWithin time.Duration `yaml:"deliverWithin" json:"deliverWithin,omitempty"`
	// SealedAllowlist are the webhook hosts (host or host:port, as in
	// the URL) stella may post to in sealed mode; no other is contacted.
	SealedAllowlist []string `yaml:"sealedAllowlist" json:"sealedAllowlist,omitempty"`
	// GateWaitAlert raises pack.approval.overdue when a run has waited at
	// a gate longer (default 30m).
	GateWaitAlert time.Duration `yaml:"gateWaitAlert" json:"gateWaitAlert,omitempty"`
	// Keep is how long a delivered event stays in the spool, and how old
	// an event may be to be spooled at all (default 7 days).
	Keep time.Duration `yaml:"keep" json:"keep,omitempty"`
}

// RegistryConfig is how to reach one registry host.
type RegistryConfig struct {
	Host      string `yaml:"host" json:"host"`
	PlainHTTP bool   `yaml:"plainHTTP" json:"plainHTTP,omitempty"`
	CAFile    string `yaml:"caFile" json:"caFile,omitempty"`
	CertFile  string `yaml:"certFile" json:"certFile,omitempty"`
	KeyFile   string `yaml:"keyFile" json:"keyFile,omitempty"`
}

// ErrConfigInvalid: the config file cannot be read as a stella config.
var ErrConfigInvalid = errors.New("config file is invalid")

// LoadConfig reads path; a missing file gives the defaults.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return c, fmt.Errorf("%s: %w: not YAML: %s", path, ErrConfigInvalid, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) > 0 {
		if msg := checkConfigNode(doc.Content[0], reflect.TypeOf(c), ""); msg != "" {
			return c, fmt.Errorf("%s: %w: %s", path, ErrConfigInvalid, msg)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("%s: %w: %v", path, ErrConfigInvalid, err)
	}
	if c.RunRetention != "" {
		if _, err := runs.ParseRetention(c.RunRetention); err != nil {
			return c, fmt.Errorf("%s: runRetention: %w: %w", path, ErrConfigInvalid, err)
		}
	}
	if c.MetricsTextfile != "" && (!strings.HasSuffix(c.MetricsTextfile, metrics.TextfileExt) || !filepath.IsAbs(c.MetricsTextfile)) {
		return c, fmt.Errorf("%s: metricsTextfile: %w: expected an absolute file name ending in %s (node_exporter reads only those), got %q", path, ErrConfigInvalid, metrics.TextfileExt, c.MetricsTextfile)
	}
	for i, h := range c.Notify.Hooks {
		if err := h.Check(); err != nil {
			return c, fmt.Errorf("%s: notify.hooks[%d]: %w: %w", path, i, ErrConfigInvalid, err)
		}
	}
	if c.Traces.Endpoint != "" {
		if _, err := otlp.CheckEndpoint(c.Traces.Endpoint); err != nil {
			return c, fmt.Errorf("%s: traces.endpoint: %w: %v", path, ErrConfigInvalid, err)
		}
	}
	if (c.Traces.CertFile == "") != (c.Traces.KeyFile == "") {
		return c, fmt.Errorf("%s: traces: %w: certFile and keyFile go together", path, ErrConfigInvalid)
	}
	for i, h := range c.StepAllowlist {
		if msg := pack.CheckAllowlistEntry(h); msg != "" {
			return c, fmt.Errorf("%s: stepAllowlist[%d]: %s: %w", path, i, msg, ErrConfigInvalid)
		}
	}
	return c, nil
}

// checkConfigNode checks a YAML node against the config type t before it
// is decoded, so that the operator reads what is wrong in the config's own
// words (the line, the key, what it expects, the keys there are) rather
// than the YAML library's. "" when it finds nothing.
func checkConfigNode(n *yaml.Node, t reflect.Type, at string) string {
	durationType := reflect.TypeOf(time.Duration(0))
	where := func(n *yaml.Node, key string) string {
		return fmt.Sprintf("line %d: %s", n.Line, strings.TrimPrefix(at+"."+key, "."))
	}
	switch {
	case t == durationType:
		if d, err := time.ParseDuration(n.Value); n.Kind != yaml.ScalarNode || err != nil || d < 0 {
			return fmt.Sprintf("line %d: %s: expected a duration such as 30s, 5m or 2h, got %q", n.Line, at, n.Value)
		}
	case t.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || (n.Value != "true" && n.Value != "false") {
			return fmt.Sprintf("line %d: %s: expected true or false, got %q", n.Line, at, n.Value)
		}
	case t.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			return fmt.Sprintf("line %d: %s: expected a single value", n.Line, at)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Sprintf("line %d: %s: expected a list", n.Line, at)
		}
		for i, item := range n.Content {
			if msg := checkConfigNode(item, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); msg != "" {
				return msg
			}
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if at == "" {
				return fmt.Sprintf("line %d: expected keys and values (key: value)", n.Line)
			}
			return fmt.Sprintf("line %d: %s: expected keys and values (key: value)", n.Line, at)
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
				fields[tag] = t.Field(i).Type
				names = append(names, tag)
			}
		}
		sort.Strings(names)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				return fmt.Sprintf("%s: unknown key; the keys are %s", where(k, k.Value), strings.Join(names, ", "))
			}
			if msg := checkConfigNode(v, ft, strings.TrimPrefix(at+"."+k.Value, ".")); msg != "" {
				return msg
			}
		}
	}
	return ""
}

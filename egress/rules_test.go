package egress

import "testing"

func TestRulesAllows(t *testing.T) {
	pack := []string{
		"registry.example.com",
		"db.example.com:5432",
		"*.cdn.example.net",
		"*.api.example.org:443",
		"10.1.2.3",
		"10.9.9.9:8080",
		"2001:db8::1",
		"[2001:db8::2]:443",
		"[2001:db8::3]",
		"Mixed.Example.COM.",
		"127.0.0.1:5432",
		"bad entry",
		"host:0",
		"host:99999",
		"*.",
		"*.10.0.0.1",
	}
	tests := []struct {
		host string
		port int
		want bool
	}{
		// host: every port, case and trailing dot ignored
		{"registry.example.com", 443, true},
		{"registry.example.com", 22, true},
		{"REGISTRY.Example.Com", 443, true},
		{"registry.example.com.", 443, true},
		{"x.registry.example.com", 443, false},
		{"example.com", 443, false},
		// host:port: that port only
		{"db.example.com", 5432, true},
		{"db.example.com", 5433, false},
		// *.domain: subdomains at any depth, not the apex
		{"a.cdn.example.net", 80, true},
		{"a.b.c.cdn.example.net", 8443, true},
		{"A.CDN.example.net.", 80, true},
		{"cdn.example.net", 80, false},
		{"xcdn.example.net", 80, false},
		// *.domain:port
		{"v1.api.example.org", 443, true},
		{"v1.api.example.org", 80, false},
		{"api.example.org", 443, false},
		// IP: every port; IP:port
		{"10.1.2.3", 1, true},
		{"10.1.2.3", 65535, true},
		{"10.1.2.4", 80, false},
		{"10.9.9.9", 8080, true},
		{"10.9.9.9", 8081, false},
		{"::ffff:10.1.2.3", 80, true}, // IPv4-mapped is the IPv4 address
		// IPv6, with and without brackets, with and without a port
		{"2001:db8::1", 22, true},
		{"[2001:db8::1]", 22, true},
		{"2001:0db8:0:0::1", 22, true},
		{"2001:db8::2", 443, true},
		{"2001:db8::2", 80, false},
		{"2001:db8::3", 80, true},
		{"2001:db8::4", 80, false},
		{"fe80::1%eth0", 80, false},
		// names in mixed case in the entry
		{"mixed.example.com", 80, true},
		// a name never matches an IP entry, an IP never a name entry
		{"10.1.2.3.nip.io", 80, false},
		{"1.2.3.4.", 80, false},
		{"10.0.0.1", 80, false}, // "*.10.0.0.1" is no entry
		// host loopback named explicitly
		{"127.0.0.1", 5432, true},
		{"127.0.0.1", 22, false},
		{"localhost", 5432, false},
		// malformed destinations and ports
		{"", 80, false},
		{"bad entry", 80, false},
		{"host", 0, false},
		{"host", 99999, false},
		{"registry.example.com", 0, false},
		{"registry.example.com", -1, false},
		{"registry.example.com", 65536, false},
		{"a..b", 80, false},
		{"*.cdn.example.net", 80, false},
	}
	r := Rules{Allowlist: pack}
	for _, tt := range tests {
		got, why := r.Allows(tt.host, tt.port)
		if got != tt.want {
			t.Errorf("Allows(%q, %d) = %v (%s), want %v", tt.host, tt.port, got, why, tt.want)
		}
		if !got && why == "" {
			t.Errorf("Allows(%q, %d) refused without a reason", tt.host, tt.port)
		}
	}
}

func TestRulesSealed(t *testing.T) {
	r := Rules{
		Allowlist: []string{"registry.example.com", "*.example.net", "10.0.0.1", "db.example.org:5432"},
		Host:      []string{"registry.example.com:443", "a.example.net", "10.0.0.0", "db.example.org"},
		Sealed:    true,
	}
	tests := []struct {
		host   string
		port   int
		want   bool
		reason string
	}{
		{"registry.example.com", 443, true, ""},
		{"registry.example.com", 80, false, "sealed mode: not in the host's allowlist"},
		{"a.example.net", 80, true, ""},
		{"b.example.net", 80, false, "sealed mode: not in the host's allowlist"},
		{"10.0.0.1", 80, false, "sealed mode: not in the host's allowlist"},
		{"db.example.org", 5432, true, ""},
		{"db.example.org", 80, false, "not in the step's allowlist"},
		{"other.example.com", 443, false, "not in the step's allowlist"},
	}
	for _, tt := range tests {
		got, why := r.Allows(tt.host, tt.port)
		if got != tt.want || why != tt.reason {
			t.Errorf("Allows(%q, %d) = %v, %q; want %v, %q", tt.host, tt.port, got, why, tt.want, tt.reason)
		}
	}

	// Sealed with no host allowlist allows nothing; Host is ignored
	// outside sealed mode.
	if ok, _ := (Rules{Allowlist: []string{"a.example"}, Sealed: true}).Allows("a.example", 443); ok {
		t.Error("sealed mode without a host allowlist allowed a destination")
	}
	if ok, why := (Rules{Allowlist: []string{"a.example"}, Host: []string{"b.example"}}).Allows("a.example", 443); !ok {
		t.Errorf("outside sealed mode the host allowlist refused: %s", why)
	}
}

func TestRulesAllowsName(t *testing.T) {
	r := Rules{
		Allowlist: []string{"db.example.com:5432", "*.example.net", "10.0.0.1", "Upper.Example.org"},
		Host:      []string{"db.example.com", "a.example.net"},
	}
	tests := []struct {
		name string
		want bool
	}{
		{"db.example.com", true}, // some port is allowed
		{"DB.example.com.", true},
		{"a.example.net", true},
		{"b.c.example.net", true},
		{"example.net", false},
		{"upper.example.org", true},
		{"10.0.0.1", false}, // an IP is no name
		{"other.example", false},
		{"", false},
	}
	for _, tt := range tests {
		if got, why := r.AllowsName(tt.name); got != tt.want {
			t.Errorf("AllowsName(%q) = %v (%s), want %v", tt.name, got, why, tt.want)
		}
	}
	r.Sealed = true
	for name, want := range map[string]bool{"db.example.com": true, "a.example.net": true, "b.example.net": false, "upper.example.org": false} {
		if got, why := r.AllowsName(name); got != want {
			t.Errorf("sealed: AllowsName(%q) = %v (%s), want %v", name, got, why, want)
		}
	}
}

package egress

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// query is a DNS query for name of type t.
func query(t testing.TB, name string, qt dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x5a5a, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qt, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestResolverAnswers(t *testing.T) {
	lc := ListenConfig{LookupHost: func(_ context.Context, host string) ([]string, error) {
		if host == "db.example.com" || host == "a.cdn.example.net" {
			return []string{"192.0.2.10"}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}}
	allow := []string{"db.example.com:5432", "*.cdn.example.net", "198.18.0.1"}
	_, sock, log := startGateway(t, lc, Rules{Allowlist: allow})
	r := newResolver(sock, allow, newNames(allow))
	ctx := context.Background()

	tests := []struct {
		name  string
		qtype dnsmessage.Type
		rcode dnsmessage.RCode
		a     string // the answer's address, "" for none
	}{
		{"db.example.com.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.18.0.2"}, // 198.18.0.1 is an allowlist IP
		{"DB.Example.COM.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.18.0.2"}, // the same name, the same address
		{"a.cdn.example.net.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.18.0.3"},
		{"db.example.com.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, ""},
		{"db.example.com.", dnsmessage.TypeMX, dnsmessage.RCodeSuccess, ""},
		{"nx.cdn.example.net.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
		{"evil.example.org.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
		{"evil.example.org.", dnsmessage.TypeAAAA, dnsmessage.RCodeNameError, ""}, // remembered: reported once
		{"evil.example.org.", dnsmessage.TypeTXT, dnsmessage.RCodeNameError, ""},  // not asked about
		{"localhost.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "127.0.0.1"},
		{"x.localhost.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, "::1"},
		{"1.2.3.4.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
	}
	for _, tt := range tests {
		out := r.answer(ctx, query(t, tt.name, tt.qtype))
		var p dnsmessage.Parser
		h, err := p.Start(out)
		if err != nil {
			t.Fatalf("%s %v: unparsable answer: %v", tt.name, tt.qtype, err)
		}
		q, err := p.Question()
		if err != nil || q.Name.String() != tt.name || q.Type != tt.qtype {
			t.Errorf("%s %v: answer's question %v, %v", tt.name, tt.qtype, q, err)
		}
		_ = p.SkipAllQuestions()
		answers, err := p.AllAnswers()
		if err != nil {
			t.Fatal(err)
		}
		if h.ID != 0x5a5a || !h.Response || !h.RecursionDesired || h.RCode != tt.rcode {
			t.Errorf("%s %v: header %+v, want rcode %v", tt.name, tt.qtype, h, tt.rcode)
		}
		var got string
		for _, a := range answers {
			switch b := a.Body.(type) {
			case *dnsmessage.AResource:
				got = netip.AddrFrom4(b.A).String()
			case *dnsmessage.AAAAResource:
				got = netip.AddrFrom16(b.AAAA).String()
			}
		}
		if len(answers) > 1 || got != tt.a {
			t.Errorf("%s %v: answers %v, want %q", tt.name, tt.qtype, answers, tt.a)
		}
	}
	if name, ok := r.names.name(netip.MustParseAddr("198.18.0.2")); !ok || name != "db.example.com" {
		t.Errorf("198.18.0.2 stands for %q, %v; want db.example.com", name, ok)
	}
	if got := log.list(); len(got) != 1 || got[0] != "evil.example.org" {
		t.Errorf("blocked calls %q, want [evil.example.org] once", got)
	}
}

func TestResolverMalformed(t *testing.T) {
	r := newResolver(filepath.Join(t.TempDir(), "none.sock"), nil, newNames(nil))
	ctx := context.Background()
	if out := r.answer(ctx, []byte{1, 2, 3}); out != nil {
		t.Errorf("answered a 3-byte message: %x", out)
	}
	// A response is not a query.
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, Response: true})
	msg, _ := b.Finish()
	if out := r.answer(ctx, msg); out != nil {
		t.Errorf("answered a response: %x", out)
	}
	// No question: FORMERR; the gateway unreachable: SERVFAIL.
	b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 8})
	msg, _ = b.Finish()
	for _, tt := range []struct {
		msg   []byte
		rcode dnsmessage.RCode
	}{
		{msg, dnsmessage.RCodeFormatError},
		{query(t, "example.com.", dnsmessage.TypeA), dnsmessage.RCodeServerFailure},
	} {
		var p dnsmessage.Parser
		h, err := p.Start(r.answer(ctx, tt.msg))
		if err != nil || h.RCode != tt.rcode {
			t.Errorf("answer %+v, %v; want rcode %v", h, err, tt.rcode)
		}
	}
}

func TestNamesPoolEnds(t *testing.T) {
	n := newNames(nil)
	n.next = netip.MustParseAddr("198.19.255.254")
	if a, ok := n.addr("last.example"); !ok || a.String() != "198.19.255.254" {
		t.Fatalf("last address: %v, %v", a, ok)
	}
	if a, ok := n.addr("second.example"); !ok || a.String() != "198.19.255.255" {
		t.Fatalf("the pool's end: %v, %v", a, ok)
	}
	if _, ok := n.addr("beyond.example"); ok {
		t.Error("allocated beyond the pool")
	}
	if a, ok := n.addr("last.example"); !ok || a.String() != "198.19.255.254" {
		t.Errorf("a known name after the pool ended: %v, %v", a, ok)
	}
}

func FuzzResolverAnswer(f *testing.F) {
	f.Add(query(f, "example.com.", dnsmessage.TypeA))
	f.Add(query(f, "localhost.", dnsmessage.TypeAAAA))
	f.Add(query(f, "a.b.", dnsmessage.TypeTXT))
	r := newResolver(filepath.Join(f.TempDir(), "none.sock"), []string{"*.b"}, newNames(nil))
	f.Fuzz(func(t *testing.T, msg []byte) {
		out := r.answer(context.Background(), msg)
		if out == nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(out)
		if err != nil || !h.Response || len(out) > 512 {
			t.Fatalf("answer to %x: %x (%v)", msg, out, err)
		}
	})
}

package display

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLine(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"plain", "deploy web-1 (v2)", "deploy web-1 (v2)"},
		{"printable utf-8", "déploiement → prod 日本", "déploiement → prod 日本"},
		{"backslash stays", `C:\path\x1b`, `C:\path\x1b`},
		{"esc erase line", "ls\x1b[2K\rrm -rf /", `ls\x1b[2K\rrm -rf /`},
		{"osc title", "\x1b]0;owned\x07", `\x1b]0;owned\a`},
		{"backspace", "rm\b\b\bls", `rm\b\b\bls`},
		{"del", "a\x7fb", `a\x7fb`},
		{"nul", "a\x00b", `a\x00b`},
		{"c1 csi", "a\u009b2Kb", `a\u009b2Kb`},
		{"c1 range", "\u0080\u0085\u009f", `\u0080\u0085\u009f`},
		{"newline tab in a line", "a\nb\tc\vd\fe", `a\nb\tc\vd\fe`},
		{"crlf", "a\r\n", `a\r\n`},
		{"bidi override", "echo \u202egnp.exe", `echo \u202egnp.exe`},
		{"bidi embeddings", "\u202a\u202b\u202c\u202d", `\u202a\u202b\u202c\u202d`},
		{"bidi isolates", "\u2066a\u2067b\u2068c\u2069", `\u2066a\u2067b\u2068c\u2069`},
		{"bidi marks", "\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"zero width", "r\u200bm\u200c\u200d\u2060\ufeff", `r\u200bm\u200c\u200d\u2060\ufeff`},
		{"soft hyphen", "r\u00adm", `r\u00adm`},
		{"hangul filler", "a\u3164b", `a\u3164b`},
		{"tag characters", "ok\U000e0072\U000e006d", `ok\U000e0072\U000e006d`},
		{"line separators", "a\u2028b\u2029c\u0085", `a\u2028b\u2029c\u0085`},
		{"no-break and other spaces", "rm\u00a0-rf\u2009/\u3000", `rm\u00a0-rf\u2009/\u3000`},
		{"private use", "\ue000", `\ue000`},
		{"invalid utf-8", "a\xffb\xc3", `a\xffb\xc3`},
		{"encoded surrogate", "\xed\xa0\x80", `\xed\xa0\x80`},
		{"replacement char itself", "\ufffd", "\ufffd"},
		{"empty", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Line(c.in); got != c.want {
				t.Errorf("Line(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestText(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"keeps newlines and tabs", "a\tb\nc\n", "a\tb\nc\n"},
		{"escapes the rest", "progress\r50%\x1b[1A\u202e\n", `progress\r50%\x1b[1A\u202e` + "\n"},
		{"colour codes", "\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"printable utf-8", "ünïcödé ✓", "ünïcödé ✓"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Text(c.in); got != c.want {
				t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestArgv(t *testing.T) {
	cases := []struct {
		name string
		in   []string
		want string
	}{
		{"literal words", []string{"/bin/echo", "a=b", "x@y:1,2%"}, "/bin/echo a=b x@y:1,2%"},
		{"space and quote", []string{"sh", "-c", "echo 'hi' there"}, `sh -c 'echo '\''hi'\'' there'`},
		{"empty word", []string{"printf", ""}, "printf ''"},
		{"no words", nil, ""},
		{"unicode printable", []string{"echo", "é"}, "echo 'é'"},
		{"escape sequence", []string{"sh", "-c", "rm -rf / #\x1b[2K\rls"}, `sh -c $'rm -rf / #\x1b[2K\rls'`},
		{"bidi override", []string{"cat", "\u202etxt.sh"}, `cat $'\u202etxt.sh'`},
		{"backslash and quote in $'…'", []string{"x\\'\n"}, `$'x\\\'\n'`},
		{"backslash alone stays single-quoted", []string{`a\b`}, `'a\b'`},
		{"no-break space", []string{"rm\u00a0-rf"}, `$'rm\u00a0-rf'`},
		{"invalid utf-8", []string{"\xff"}, `$'\xff'`},
		{"beyond the bmp", []string{"\U000e0041"}, `$'\U000e0041'`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Argv(c.in); got != c.want {
				t.Errorf("Argv(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

// TestArgvShellReadsBack has bash read Argv's rendering back: it must give
// exactly the words rendered, whatever bytes they hold.
func TestArgvShellReadsBack(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to read the rendering back")
	}
	argv := []string{"plain", "two words", "it's", "", `back\slash`, "esc\x1b[2K\r!", "\u202eevil\u2066",
		"zw\u200bj", "nb\u00a0sp", "c1\u0085\u009b", "bad\xff\xc3(", "tab\tnl\n", "tag\U000e0041", "\\'\\", "$HOME `x` \"q\"", "\u00e9\u3164"}
	script := "printf '%s\\0' " + Argv(argv)
	out, err := exec.Command(bash, "-c", script).Output()
	if err != nil {
		t.Fatalf("bash -c %q: %v", script, err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(argv) {
		t.Fatalf("bash read %d words %q, want %d %q", len(got), got, len(argv), argv)
	}
	for i := range argv {
		if got[i] != argv[i] {
			t.Errorf("word %d: bash read %q, want %q (rendered %s)", i, got[i], argv[i], Argv(argv[i:i+1]))
		}
	}
}

// hidden reports the first rune of out that a terminal would obey or not
// show, with keep allowing newlines and tabs.
func hidden(out string, keep bool) (rune, bool) {
	for i, r := range out {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(out[i:]); n <= 1 {
				return r, true
			}
		}
		if keep && (r == '\n' || r == '\t') {
			continue
		}
		if !shown(r) {
			return r, true
		}
	}
	return 0, false
}

func FuzzRender(f *testing.F) {
	for _, s := range []string{"ls\x1b[2K\rrm", "\u202e\u2066\u200b", "\xff\xc3", "a\tb\nc", "\u0085\u009b", "x\U000e0041"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, bad := hidden(Line(s), false); bad {
			t.Errorf("Line(%q) holds %U", s, r)
		}
		if r, bad := hidden(Text(s), true); bad {
			t.Errorf("Text(%q) holds %U", s, r)
		}
		if r, bad := hidden(Argv([]string{s, s}), false); bad {
			t.Errorf("Argv(%q) holds %U", s, r)
		}
		checkJSON(t, s)
		if plain(s, false) && Line(s) != s {
			t.Errorf("Line changed the plain %q", s)
		}
		// The stream renders as Text does, however the text is cut.
		for _, cut := range []int{1, 2, 3} {
			var b bytes.Buffer
			w := NewWriter(&b)
			for i := 0; i < len(s); i += cut {
				if _, err := w.Write([]byte(s[i:min(i+cut, len(s))])); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if b.String() != Text(s) {
				t.Errorf("Writer in writes of %d bytes gave %q, Text gives %q", cut, b.String(), Text(s))
			}
		}
	})
}

func TestWriterSplitRunes(t *testing.T) {
	in := "é\u202e→\x1b[0m\xff日\n"
	for cut := 1; cut <= len(in); cut++ {
		var b bytes.Buffer
		w := NewWriter(&b)
		for i := 0; i < len(in); i += cut {
			n, err := w.Write([]byte(in[i:min(i+cut, len(in))]))
			if err != nil || n != min(cut, len(in)-i) {
				t.Fatalf("write: %d, %v", n, err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if want := `é\u202e→\x1b[0m\xff日` + "\n"; b.String() != want {
			t.Errorf("writes of %d bytes: got %q, want %q", cut, b.String(), want)
		}
	}
	// An unfinished rune at the end is flushed as the bytes it is.
	var b bytes.Buffer
	w := NewWriter(&b)
	w.Write([]byte("ok\xe2\x80"))
	if b.String() != "ok" {
		t.Errorf("before Flush: %q, want the unfinished rune held back", b.String())
	}
	w.Flush()
	if b.String() != `ok\xe2\x80` {
		t.Errorf("after Flush: %q", b.String())
	}
}

// checkJSON: JSON of encoded s holds no character a terminal would obey or
// hide, and decodes to what encoding/json's own output decodes to.
func checkJSON(t *testing.T, s string) {
	t.Helper()
	v := map[string]any{"k" + s: []string{s, "plain"}}
	enc, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got := JSON(enc)
	if r, bad := hidden(string(got), true); bad {
		t.Errorf("JSON of %q holds %U: %s", s, r, got)
	}
	var a, b any
	if err := json.Unmarshal(enc, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &b); err != nil {
		t.Fatalf("JSON made invalid JSON of %q: %v\n%s", s, err, got)
	}
	if ja, jb := fmt.Sprint(a), fmt.Sprint(b); ja != jb {
		t.Errorf("JSON changed the value of %q: %s, want %s", s, jb, ja)
	}
}

func TestJSON(t *testing.T) {
	for _, s := range []string{"plain", "\x7f\u0085\u009b", "\u202eevil\u2066", "zw\u200b", "tag\U000e0041", "nb\u00a0sp", "esc\x1b[2K\r", "bad\xff", "é日"} {
		checkJSON(t, s)
	}
	enc := []byte(`{"a": "x\u001b` + "\u202e\x7f\U000e0041" + `"}`)
	if got, want := string(JSON(enc)), `{"a": "x\u001b\u202e\u007f\udb40\udc41"}`; got != want {
		t.Errorf("JSON: %s, want %s", got, want)
	}
	if b := []byte(`{"a": "é"}`); &JSON(b)[0] != &b[0] {
		t.Error("JSON copied a document that needed nothing")
	}
}

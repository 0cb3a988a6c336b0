package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// tricky are values with every character class the escapers treat apart.
var tricky = []string{
	"plainTokenValue123",
	`p@ss w0rd/+<x>&"q"\z`,
	"ctl\x00\x01\x1f\x7f\b\f\n\r\tend",
	"unicode é ü 漢字 🔑 \u2028 \u2029 end",
	"invalid \xff\xfe utf-8 \xc3",
	"percent %41 plus + eq = amp &",
}

// TestJSONEscapeMatchesEncodingJSON pins the default styles to what
// encoding/json writes, with and without HTML escaping.
func TestJSONEscapeMatchesEncodingJSON(t *testing.T) {
	for _, v := range tricky {
		html, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var plain bytes.Buffer
		enc := json.NewEncoder(&plain)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		if got, want := jsonEscape(nil, []byte(v), jsonStyle{html: true}), html[1:len(html)-1]; !bytes.Equal(got, want) {
			t.Errorf("html style of %q = %s, encoding/json writes %s", v, got, want)
		}
		want := bytes.TrimSuffix(plain.Bytes(), []byte("\n"))
		if got := jsonEscape(nil, []byte(v), jsonStyle{}); !bytes.Equal(got, want[1:len(want)-1]) {
			t.Errorf("plain style of %q = %s, encoding/json writes %s", v, got, want)
		}
	}
}

// TestJSONStyles pins the other styles on one value.
func TestJSONStyles(t *testing.T) {
	v := []byte("a/b\n\x01é🔑<")
	for _, c := range []struct {
		st   jsonStyle
		want string
	}{
		{jsonStyle{html: true}, `a/b\n\u0001é🔑\u003c`},
		{jsonStyle{}, `a/b\n\u0001é🔑<`},
		{jsonStyle{ctlHex: true}, `a/b\u000a\u0001é🔑<`},
		{jsonStyle{ctlHex: true, upper: true}, `a/b\u000A\u0001é🔑<`},
		{jsonStyle{ascii: true}, `a/b\n\u0001\u00e9\ud83d\udd11<`},
		{jsonStyle{slash: true}, `a\/b\n\u0001é🔑<`},
		{jsonStyle{slash: true, ascii: true}, `a\/b\n\u0001\u00e9\ud83d\udd11<`},
	} {
		if got := string(jsonEscape(nil, v, c.st)); got != c.want {
			t.Errorf("%+v: %s, want %s", c.st, got, c.want)
		}
		// Whatever the style, a JSON decoder reads the value back.
		var back string
		if err := json.Unmarshal([]byte(`"`+c.want+`"`), &back); err != nil || back != string(v) {
			t.Errorf("%+v: %s decodes to %q, %v", c.st, c.want, back, err)
		}
	}
}

// TestBase64Core checks that the core at each alignment is what appears in
// the encoding of x inside random surroundings, at the position the
// alignment says, and that it is as long as x's bits allow.
func TestBase64Core(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for range 300 {
		x := make([]byte, MinLen+r.IntN(30))
		for i := range x {
			x[i] = byte(r.Uint32())
		}
		for off := range 6 {
			blob := make([]byte, off+len(x)+r.IntN(5))
			for i := range blob {
				blob[i] = byte(r.Uint32())
			}
			copy(blob[off:], x)
			for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
				core := base64Core(enc, x, off%3)
				e := enc.EncodeToString(blob)
				at := (8*off + 5) / 6
				if !strings.HasPrefix(e[at:], core) {
					t.Fatalf("core of %x at alignment %d is %s; encoding of the blob with it at %d is %s", x, off%3, core, off, e)
				}
				if want := 8*(off+len(x))/6 - at; len(core) != want {
					t.Fatalf("core of %d bytes at alignment %d has %d characters, want %d", len(x), off%3, len(core), want)
				}
			}
		}
	}
}

// TestEncodings lists the forms one value registers.
func TestEncodings(t *testing.T) {
	v := `p@ss w0rd/+<x>&"q"`
	got := encodings([]byte(v), true)
	for _, want := range []string{
		v,
		base64.StdEncoding.EncodeToString([]byte(v)),
		base64.RawURLEncoding.EncodeToString([]byte(v)),
		base64Core(base64.RawStdEncoding, []byte(v), 1),
		base64Core(base64.RawURLEncoding, []byte(v), 2),
		url.QueryEscape(v), // p%40ss+w0rd%2F%2B%3Cx%3E%26%22q%22
		"p%40ss+w0rd%2f%2b%3cx%3e%26%22q%22",
		url.PathEscape(v),
		`p@ss w0rd/+\u003cx\u003e\u0026\"q\"`,
		`p@ss w0rd/+<x>&\"q\"`,
		`p@ss w0rd\/+<x>&\"q\"`,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("encodings of %q lack %q; have %q", v, want, got)
		}
	}
	for _, f := range got {
		if len(f) < MinLen {
			t.Errorf("form %q is shorter than MinLen", f)
		}
	}
}

// TestFormsShortEncodingsDropped: a value of exactly MinLen bytes has no
// form shorter than MinLen, and a multi-line value's short lines are not
// registered.
func TestFormsShortEncodingsDropped(t *testing.T) {
	got := forms([]byte("line-one-is-long\nshort\n  line-three-too  \n"))
	for _, want := range []string{"line-one-is-long", "line-three-too", "line-one-is-long\nshort\n  line-three-too"} {
		if !slices.Contains(got, want) {
			t.Errorf("forms lack %q", want)
		}
	}
	for _, f := range got {
		if f == "short" || len(f) < MinLen {
			t.Errorf("form %q registered", f)
		}
	}
}

// TestFormsBinaryHasNoLines: a value that is not UTF-8 is not split into
// lines at its 0x0A bytes.
func TestFormsBinaryHasNoLines(t *testing.T) {
	v := []byte("\xff\xfe\x00binary-part-one\nbinary-part-two\x80")
	for _, f := range forms(v) {
		if f == "binary-part-one" || f == "binary-part-two\x80" {
			t.Errorf("binary value registered line %q", f)
		}
	}
}

package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
)

// newSet returns a set with values added.
func newSet(t testing.TB, values ...string) *Set {
	t.Helper()
	s := New()
	for _, v := range values {
		if err := s.Add([]byte(v)); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	return s
}

// TestBase64InsideBlob: a value base64-encoded inside a longer blob, at
// every offset 0..5 and with 0..3 bytes after it, in both alphabets,
// padded or not, is masked exactly from the first to the last character
// whose bits all come from the value, and further only where the blob's
// encoding goes on as the encoding of the value alone does (always when
// the value ends the blob at a group boundary).
func TestBase64InsideBlob(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	values := []string{"s3cr3t-t0ken-value", "exactly8", `p@ss w0rd/+<x>&"q"`, "\x00\xff\x10binary\xfe\x01"}
	s := newSet(t, values...)
	for _, v := range values {
		for off := range 6 {
			for after := range 4 {
				blob := make([]byte, off+len(v)+after)
				for i := range blob {
					blob[i] = byte(r.Uint32())
				}
				copy(blob[off:], v)
				for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
					e := enc.EncodeToString(blob)
					start, end := (8*off+5)/6, 8*(off+len(v))/6
					if off%3 == 0 {
						alone := enc.EncodeToString([]byte(v))
						unpadded := strings.TrimRight(alone, "=")
						switch {
						case strings.HasPrefix(e[start:], alone):
							end = start + len(alone)
						case strings.HasPrefix(e[start:], unpadded):
							end = start + len(unpadded)
						}
						if off == 0 && after == 0 && end != len(e) {
							t.Fatalf("the encoding of %q alone is not %s", v, e)
						}
					}
					text := "data: " + e + " end"
					want := "data: " + e[:start] + Mask + e[end:] + " end"
					if got := s.String(text); got != want {
						t.Errorf("value %q at offset %d with %d after: %q, want %q", v, off, after, got, want)
					}
				}
			}
		}
	}
}

// TestJSONInsideDocument: a value JSON-encoded in a document, by
// encoding/json with and without HTML escaping and by escapers of other
// styles, is masked between the quotes.
func TestJSONInsideDocument(t *testing.T) {
	for _, v := range tricky {
		s := newSet(t, v)
		doc, err := json.Marshal(map[string]any{"a": 1, "token": v, "z": "tail"})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := s.String(string(doc)), `{"a":1,"token":"***","z":"tail"}`; got != want {
			t.Errorf("%q in encoding/json: %s, want %s", v, got, want)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode([]string{"x", v}); err != nil {
			t.Fatal(err)
		}
		if got, want := s.String(buf.String()), "[\"x\",\"***\"]\n"; got != want {
			t.Errorf("%q in encoding/json without HTML escaping: %s, want %s", v, got, want)
		}
	}
	// As Python's json.dumps writes it (non-ASCII as \uXXXX).
	s := newSet(t, "clé-secrète-🔑")
	if got, want := s.String(`{"k": "cl\u00e9-secr\u00e8te-\ud83d\udd11"}`), `{"k": "***"}`; got != want {
		t.Errorf("Python style: %s, want %s", got, want)
	}
	// As PHP's json_encode writes it ('/' as \/).
	s = newSet(t, "https://user:pw@host/path")
	if got, want := s.String(`{"u":"https:\/\/user:pw@host\/path"}`), `{"u":"***"}`; got != want {
		t.Errorf("PHP style: %s, want %s", got, want)
	}
}

// TestURLEscapedInQuery: a value URL-escaped in a query or a path, with
// upper or lower case hex digits, is masked.
func TestURLEscapedInQuery(t *testing.T) {
	v := `p@ss w0rd/+<x>&"q"`
	s := newSet(t, v)
	for _, c := range []struct{ text, want string }{
		{"GET /cb?token=" + url.QueryEscape(v) + "&x=1", "GET /cb?token=***&x=1"},
		{"GET /cb?token=" + strings.ToLower(url.QueryEscape(v)) + "&x=1", "GET /cb?token=***&x=1"},
		{"GET /files/" + url.PathEscape(v) + "/raw", "GET /files/***/raw"},
		{"GET /files/" + lowerHex(url.PathEscape(v)) + "/raw", "GET /files/***/raw"},
		{"https://h.example/?" + url.Values{"a": {"1"}, "t": {v}}.Encode(), "https://h.example/?a=1&t=***"},
	} {
		if got := s.String(c.text); got != c.want {
			t.Errorf("%s: %s, want %s", c.text, got, c.want)
		}
	}
}

// pem is a multi-line value as a key file holds it.
const pem = "-----BEGIN TEST KEY-----\n" +
	"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n" +
	"BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n" +
	"MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3S\n" +
	"C4=\n" +
	"-----END TEST KEY-----\n"

// TestMultiLineValue: each line of a multi-line value that is MinLen or
// longer is masked wherever it appears alone, and so are its encodings;
// the whole value too.
func TestMultiLineValue(t *testing.T) {
	for _, value := range []string{pem, strings.ReplaceAll(pem, "\n", "\r\n")} {
		s := newSet(t, value)
		var text, want strings.Builder
		for _, line := range strings.Split(strings.TrimSpace(pem), "\n") {
			fmt.Fprintf(&text, "[step] %s\n", line)
			if len(line) >= MinLen {
				want.WriteString("[step] ***\n")
			} else {
				fmt.Fprintf(&want, "[step] %s\n", line)
			}
		}
		if got := s.String(text.String()); got != want.String() {
			t.Errorf("lines printed one by one:\n%s\nwant\n%s", got, want.String())
		}
		whole := "before\n***" + value[len(strings.TrimSpace(value)):] + "after\n"
		if got := s.String("before\n" + value + "after\n"); got != whole {
			t.Errorf("whole value: %q, want %q", got, whole)
		}
		line := "BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
		b64 := base64.StdEncoding.EncodeToString([]byte(line))
		if got := s.String("x " + b64 + " y"); got != "x *** y" {
			t.Errorf("base64 of a line: %q", got)
		}
		j, _ := json.Marshal(value)
		if got := s.String(`{"key":` + string(j) + `}`); got != `{"key":"***"}` {
			t.Errorf("JSON of the whole value: %s", got)
		}
	}
}

// TestSurroundingWhitespace: a value given with surrounding whitespace is
// masked without it in plain text (the line's end stays), and its base64
// as given (as of a token file with its newline) is masked whole.
func TestSurroundingWhitespace(t *testing.T) {
	s := newSet(t, "  tokenvalue123\n")
	if got, want := s.String("a tokenvalue123\nb\n"), "a ***\nb\n"; got != want {
		t.Errorf("plain: %q, want %q", got, want)
	}
	e := base64.StdEncoding.EncodeToString([]byte("  tokenvalue123\n"))
	if got, want := s.String("b64="+e+";"), "b64=***;"; got != want {
		t.Errorf("base64 of the value as given: %q, want %q", got, want)
	}
}

// TestOverlapsMerge: overlapping and adjacent occurrences of different
// values make one mask; separate ones make one each.
func TestOverlapsMerge(t *testing.T) {
	s := newSet(t, "AAAAbbbbCCCC", "CCCCddddEEEE", "ffffgggg", "hhhhiiii")
	for _, c := range []struct{ text, want string }{
		{"x AAAAbbbbCCCCddddEEEE y", "x *** y"},  // overlapping
		{"x ffffgggghhhhiiii y", "x *** y"},      // adjacent
		{"x ffffgggg-hhhhiiii y", "x ***-*** y"}, // one byte apart
		{"AAAAbbbbCCCC", "***"},
		{"AAAAbbbbCCC", "AAAAbbbbCCC"}, // cut short
	} {
		if got := s.String(c.text); got != c.want {
			t.Errorf("%q: %q, want %q", c.text, got, c.want)
		}
	}
}

// TestValuePrefixOfAnother: a value that is a prefix of another is masked
// alone, and the longer one is masked whole.
func TestValuePrefixOfAnother(t *testing.T) {
	s := newSet(t, "abcdefgh", "abcdefghijkl")
	for _, c := range []struct{ text, want string }{
		{"<abcdefghijkl>", "<***>"},
		{"<abcdefghij>", "<***ij>"},
		{"<abcdefg>", "<abcdefg>"},
	} {
		if got := s.String(c.text); got != c.want {
			t.Errorf("%q: %q, want %q", c.text, got, c.want)
		}
	}
}

// TestBinaryValue: a value with NUL, 0xff and newline bytes is masked raw
// and in base64.
func TestBinaryValue(t *testing.T) {
	v := "\x00\xff\n\x01\x02\x03\r\x80\x90key"
	s := newSet(t, v)
	if got, want := s.Bytes([]byte("<<"+v+">>")), []byte("<<***>>"); !bytes.Equal(got, want) {
		t.Errorf("raw: %q, want %q", got, want)
	}
	if got, want := s.String(base64.StdEncoding.EncodeToString([]byte(v))), Mask; got != want {
		t.Errorf("base64: %q, want %q", got, want)
	}
}

// TestTooShort: values shorter than MinLen once trimmed are refused with
// ErrTooShort, register nothing, and the error says nothing of them.
func TestTooShort(t *testing.T) {
	s := New()
	for _, v := range []string{"", "       ", "1234567", "  1234567\n", "XYZ", "\x00\x01\x02\x03\x04\x05\x06", "\t\x7f\x7f\x7f\x7f\x7f\x7f\x7f\n"} {
		err := s.Add([]byte(v))
		if !errors.Is(err, ErrTooShort) {
			t.Errorf("Add(%q) = %v, want ErrTooShort", v, err)
			continue
		}
		msg := err.Error()
		trimmed := strings.TrimSpace(v)
		if trimmed != "" && strings.Contains(msg, trimmed) {
			t.Errorf("the error of %q contains it: %s", v, msg)
		}
		for i := range len(trimmed) {
			if strings.IndexByte(msg, trimmed[i]) >= 0 {
				t.Errorf("the error of %q contains its byte %q: %s", v, trimmed[i], msg)
			}
		}
	}
	if s.Len() != 0 || len(s.pats) != 0 {
		t.Errorf("refused values registered %d values, %d patterns", s.Len(), len(s.pats))
	}
	if err := s.Add([]byte("12345678")); err != nil {
		t.Errorf("a value of MinLen bytes: %v", err)
	}
}

// TestAddTwice: adding a value again changes nothing.
func TestAddTwice(t *testing.T) {
	s := newSet(t, "tokenvalue123", "othervalue456")
	pats := len(s.pats)
	if err := s.Add([]byte("tokenvalue123")); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 || len(s.pats) != pats {
		t.Errorf("after adding a value again: Len %d, %d patterns; want 2, %d", s.Len(), len(s.pats), pats)
	}
}

// TestAddCopies: the set keeps its own copy of a value.
func TestAddCopies(t *testing.T) {
	v := []byte("tokenvalue123")
	s := newSet(t)
	if err := s.Add(v); err != nil {
		t.Fatal(err)
	}
	copy(v, "XXXXXXXXXXXXX")
	if got := s.String("tokenvalue123"); got != Mask {
		t.Errorf("after the caller reused its slice: %q", got)
	}
}

// TestBytesUnchanged: Bytes returns its argument itself when nothing
// matched, and String its string; an empty set matches nothing.
func TestBytesUnchanged(t *testing.T) {
	for _, s := range []*Set{New(), new(Set), newSet(t, "tokenvalue123")} {
		b := []byte("nothing secret here, only text")
		if got := s.Bytes(b); &got[0] != &b[0] || len(got) != len(b) {
			t.Errorf("Bytes returned a copy")
		}
		if got := s.Bytes(nil); got != nil {
			t.Errorf("Bytes(nil) = %q", got)
		}
		if got := s.String("plain"); got != "plain" {
			t.Errorf("String = %q", got)
		}
	}
}

// TestAddAfterUse: a value added after the set was used is masked by the
// next use.
func TestAddAfterUse(t *testing.T) {
	s := newSet(t, "firstvalue1")
	if got := s.String("firstvalue1 secondvalue2"); got != "*** secondvalue2" {
		t.Fatalf("got %q", got)
	}
	if err := s.Add([]byte("secondvalue2")); err != nil {
		t.Fatal(err)
	}
	if got := s.String("firstvalue1 secondvalue2"); got != "*** ***" {
		t.Errorf("after Add: %q", got)
	}
}

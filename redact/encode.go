package redact

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"unicode/utf8"
)

// forms returns what registering v adds to a set: the forms of v trimmed of
// surrounding whitespace (encodings), the encoded forms of v as given when
// that differs, and, for a multi-line value, the forms of each of its lines
// (trimmed) that is at least MinLen bytes long. A value that is not UTF-8
// is binary, not text, and has no lines: a 0x0A byte in a key is not a
// line break. A form may appear more than
// once; every form is at least MinLen bytes long. The caller has checked
// that v trimmed is at least MinLen bytes long.
func forms(v []byte) []string {
	t := bytes.TrimSpace(v)
	out := encodings(t, true)
	if len(t) != len(v) {
		// v as given is not masked itself, so that the whitespace around
		// a value in plain text (the end of its line) stays; its encodings
		// are, so no boundary character of theirs is left visible.
		out = append(out, encodings(v, false)...)
	}
	if bytes.IndexByte(t, '\n') >= 0 && utf8.Valid(t) {
		for line := range bytes.SplitSeq(t, []byte{'\n'}) {
			if l := bytes.TrimSpace(line); len(l) >= MinLen {
				out = append(out, encodings(l, true)...)
			}
		}
	}
	return out
}

// encodings returns the encoded forms of x that are at least MinLen bytes
// long, and x itself first when raw is set:
//
//   - the stable cores of its base64 (standard and URL alphabets) at each
//     of the three alignments, and its whole encoding alone, padded and
//     unpadded (base64Forms);
//   - url.QueryEscape and url.PathEscape of it, with upper and lower case
//     hex digits;
//   - its JSON string escapes, without the quotes (jsonStyles).
func encodings(x []byte, raw bool) []string {
	var out []string
	add := func(f string) {
		if len(f) >= MinLen {
			out = append(out, f)
		}
	}
	if raw {
		add(string(x))
	}
	for _, f := range base64Forms(x) {
		add(f)
	}
	for _, f := range []string{url.QueryEscape(string(x)), url.PathEscape(string(x))} {
		add(f)
		add(lowerHex(f))
	}
	for _, st := range jsonStyles {
		add(string(jsonEscape(nil, x, st)))
	}
	return out
}

// base64Forms returns, for the standard and the URL alphabet, the stable
// core of x's encoding at each alignment (base64Core) and the encoding of
// x alone, padded and unpadded.
func base64Forms(x []byte) []string {
	var out []string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		raw := enc.WithPadding(base64.NoPadding)
		for a := range 3 {
			out = append(out, base64Core(raw, x, a))
		}
		out = append(out, enc.EncodeToString(x), raw.EncodeToString(x))
	}
	return out
}

// base64Core returns the characters of the unpadded encoding enc of a
// stream in which x is preceded by a bytes (0, 1 or 2 modulo 3) that
// depend on x alone: the characters whose six bits all come from x. They
// appear wherever x is encoded at that alignment, whatever surrounds it;
// the one or two characters at each end that mix x's bits with its
// neighbours' do not, and stay visible (at most four bits of x each).
func base64Core(enc *base64.Encoding, x []byte, a int) string {
	buf := make([]byte, a+len(x))
	copy(buf[a:], x)
	e := enc.EncodeToString(buf)
	start := (8*a + 5) / 6      // first character whose bits start at or after x
	end := 8 * (a + len(x)) / 6 // characters wholly before x's end
	return e[start:end]
}

// lowerHex returns the URL-escaped s with the hex digits of each %XX
// escape in lower case.
func lowerHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1] = toLower(b[i+1])
			b[i+2] = toLower(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func toLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// jsonStyle is one way JSON encoders escape a string.
type jsonStyle struct {
	html   bool // <, > and & as \u003c, \u003e, \u0026
	ctlHex bool // every control character as \u00XX, none as \n, \t, ...
	upper  bool // \u escapes with upper case hex digits
	ascii  bool // every non-ASCII rune as \uXXXX (UTF-16 surrogate pairs above U+FFFF)
	slash  bool // '/' as \/
}

// jsonStyles are the JSON escapings registered: encoding/json's with and
// without HTML escaping, control characters always as \u00xx or \u00XX,
// non-ASCII as \uXXXX (Python's default), and '/' escaped as \/ with and
// without non-ASCII escaped (PHP's default is both).
var jsonStyles = []jsonStyle{
	{html: true},
	{},
	{ctlHex: true},
	{ctlHex: true, upper: true},
	{ascii: true},
	{slash: true},
	{slash: true, ascii: true},
}

// jsonEscape appends to dst what a JSON encoder of style st writes between
// the quotes of the string x. With the zero style (or html set) it is what
// encoding/json writes: short escapes for \b \f \n \r \t, \u00xx for other
// control characters, \ufffd for each byte of invalid UTF-8, and U+2028
// and U+2029 always escaped.
func jsonEscape(dst, x []byte, st jsonStyle) []byte {
	hex := "0123456789abcdef"
	if st.upper {
		hex = "0123456789ABCDEF"
	}
	u := func(dst []byte, r rune) []byte {
		return append(dst, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
	}
	for i := 0; i < len(x); {
		c := x[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '/' && st.slash:
				dst = append(dst, '\\', '/')
			case (c == '<' || c == '>' || c == '&') && st.html:
				dst = u(dst, rune(c))
			case c < 0x20 && !st.ctlHex && short[c] != 0:
				dst = append(dst, '\\', short[c])
			case c < 0x20:
				dst = u(dst, rune(c))
			default:
				dst = append(dst, c)
			}
			continue
		}
		r, size := utf8.DecodeRune(x[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = u(dst, utf8.RuneError)
		case r == '\u2028' || r == '\u2029':
			dst = u(dst, r)
		case st.ascii && r > 0xffff:
			r -= 0x10000
			dst = u(dst, 0xd800+(r>>10))
			dst = u(dst, 0xdc00+(r&0x3ff))
		case st.ascii:
			dst = u(dst, r)
		default:
			dst = append(dst, x[i:i+size]...)
		}
		i += size
	}
	return dst
}

// short holds the letter of the two-character JSON escape of each control
// character that has one.
var short = [0x20]byte{'\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't'}

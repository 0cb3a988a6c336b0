// Package display renders text that stella did not write — names,
// descriptions, commands, messages and log lines from packs, inputs,
// bundles, registries and runs — for a terminal, so that what a reader sees
// is what the text holds.
//
// A terminal obeys some characters instead of showing them: C0 controls
// (ESC starts cursor movements, colours and OSC sequences, CR returns to the
// start of the line, BS steps back), DEL, the C1 controls U+0080–U+009F
// (U+009B is a one-character CSI on some terminals), and Unicode's
// bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F,
// U+061C) reorder what follows. Zero-width and other default-ignorable
// characters (U+200B, U+2060, U+FEFF, the tag characters U+E0000–U+E007F,
// Hangul fillers…) show nothing at all, and spaces other than U+0020 look
// like one. Any of them lets a pack show `ls` where `rm -rf /` runs.
//
// The rule, one for all output: a rune is written as it is only when it is
// printable (unicode.IsGraphic), not a format character (Cf), not
// default-ignorable, and, for spaces, U+0020 itself. Every other rune is
// written as a visible escape, the ones Go and bash's $'…' both read:
// \a \b \t \n \v \f \r, \xHH for the bytes below 0x20, 0x7f and every byte
// that is not valid UTF-8, \uHHHH (exactly four digits) and \UHHHHHHHH
// (exactly eight) for the other runes. A backslash is left as it is, except
// inside Argv's $'…' words, so Line and Text are readable rather than
// reversible; Argv alone is exact.
//
// Line is for fields that hold one line (a name, a ref, a step id); Text
// keeps newlines and tabs (a log line, a multi-line message); Argv quotes a
// command as a shell reads it back; Writer applies Text to a stream;
// JSON escapes the same characters in encoded JSON, as JSON escapes.
// The package never writes anywhere itself.
package display

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Line renders s for a place that holds one line: every character a
// terminal would obey or not show, newlines and tabs included, is escaped.
func Line(s string) string {
	if plain(s, false) {
		return s
	}
	var b strings.Builder
	escape(&b, s, false, false)
	return b.String()
}

// Text renders s like Line but keeps newlines and tabs as they are: for
// text that may span lines, such as a step's output.
func Text(s string) string {
	if plain(s, true) {
		return s
	}
	var b strings.Builder
	escape(&b, s, true, false)
	return b.String()
}

// Argv renders a command so a shell reads back exactly its words: a word
// of only characters a POSIX shell takes literally as it is, a word with a
// character that must be escaped as $'…' (as bash, zsh and ksh93 read it),
// any other word in single quotes, and an empty word as a pair of single
// quotes. The result never holds a character a terminal would obey.
func Argv(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = word(a)
	}
	return strings.Join(words, " ")
}

func word(a string) string {
	literal := a != ""
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+=:,./-", r)) {
			literal = false
			break
		}
	}
	if literal {
		return a
	}
	if plain(a, false) {
		return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	var b strings.Builder
	b.WriteString("$'")
	escape(&b, a, false, true)
	b.WriteString("'")
	return b.String()
}

// plain reports whether s needs no escape; keep says newlines and tabs
// may stay.
func plain(s string, keep bool) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		if keep && (c == '\n' || c == '\t') {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || !shown(r) {
			return false
		}
		i += n
	}
	return true
}

// shown reports whether a terminal shows r as itself (ASCII controls are
// decided by the callers).
func shown(r rune) bool {
	switch {
	case r < 0x20 || r == 0x7f:
		return false
	case r < 0x7f:
		return true
	case unicode.Is(unicode.Zs, r):
		// Spaces other than U+0020 look like one but are not.
		return false
	case !unicode.IsGraphic(r):
		// Cc (C1), Cf, Co, Cs, Cn, Zl, Zp.
		return false
	case unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r):
		// Graphic by category but drawn as nothing: Hangul fillers, U+034F…
		return false
	}
	return true
}

// escape writes s to b with every rune that is not shown escaped. keep
// leaves newlines and tabs as they are; shell also escapes the backslash
// and the single quote, for a $'…' word.
func escape(b *strings.Builder, s string, keep, shell bool) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(b, `\x%02x`, s[i])
		case keep && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case shell && (r == '\\' || r == '\''):
			b.WriteByte('\\')
			b.WriteRune(r)
		case shown(r):
			b.WriteString(s[i : i+n])
		default:
			b.WriteString(escapeRune(r))
		}
		i += n
	}
}

func escapeRune(r rune) string {
	switch r {
	case '\a':
		return `\a`
	case '\b':
		return `\b`
	case '\t':
		return `\t`
	case '\n':
		return `\n`
	case '\v':
		return `\v`
	case '\f':
		return `\f`
	case '\r':
		return `\r`
	}
	switch {
	case r < 0x80:
		return fmt.Sprintf(`\x%02x`, r)
	case r <= 0xffff:
		return fmt.Sprintf(`\u%04x`, r)
	}
	return fmt.Sprintf(`\U%08x`, r)
}

// JSON returns encoded JSON with every character that Line would escape
// written as a JSON escape (\uXXXX, a surrogate pair above U+FFFF): the same
// document to any JSON reader, but nothing a terminal would obey or hide
// when it is printed. encoding/json already escapes the C0 controls and
// U+2028, U+2029; it writes DEL, C1, bidirectional and zero-width
// characters as they are. b must be valid JSON as encoding/json writes it
// (every byte outside a string is ASCII; invalid UTF-8 became U+FFFD).
func JSON(b []byte) []byte {
	if plain(string(b), true) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == '\n' || r == '\t' || r == '\r':
			// Whitespace between tokens; inside strings it is escaped already.
			out = append(out, byte(r))
		case r == utf8.RuneError && n <= 1:
			out = fmt.Appendf(out, `\u%04x`, utf8.RuneError)
		case shown(r):
			out = append(out, b[i:i+n]...)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += n
	}
	return out
}

package run

import (
	"time"
	"unicode/utf8"
)

// AppendJSON appends l as one JSON object, as encoding/json would write it
// (same keys and order, RFC 3339 time, the same string escaping), without
// reflection: a run's log is written line by line at the rate its steps
// print.
func (l *Line) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = l.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","runId":`...)
	b = appendJSONString(b, l.RunID)
	b = append(b, `,"packId":`...)
	b = appendJSONString(b, l.PackID)
	b = append(b, `,"tenant":`...)
	b = appendJSONString(b, l.Tenant)
	if l.StepID != "" {
		b = append(b, `,"stepId":`...)
		b = appendJSONString(b, l.StepID)
	}
	b = append(b, `,"stream":`...)
	b = appendJSONString(b, l.Stream)
	b = append(b, `,"msg":`...)
	b = appendJSONString(b, l.Msg)
	return append(b, '}')
}

// safeJSON marks the ASCII bytes encoding/json writes as they are.
var safeJSON = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding with HTML escaping:
// invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safeJSON[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

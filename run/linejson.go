package run

import (
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// AppendJSON appends l as one JSON object with the keys encoding/json would
// write, in the same order, without reflection: a run's log is written at
// the rate its steps print. Strings are escaped as JSON requires (control
// characters, quotes, backslashes; invalid UTF-8 becomes U+FFFD), without
// encoding/json's optional HTML escaping; decoding gives l back.
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
	if l.Data != nil {
		b = append(b, `,"data":{"offset":`...)
		b = strconv.AppendInt(b, l.Data.Offset, 10)
		b = append(b, `,"length":`...)
		b = strconv.AppendInt(b, l.Data.Length, 10)
		b = append(b, '}')
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain8 reports whether the 8 bytes of x (little-endian) need no
// escaping: no control character, quote, backslash or non-ASCII byte.
func plain8(x uint64) bool {
	hasLess := (x - ones*0x20) & ^x & highs
	q := x ^ (ones * '"')
	hasQuote := (q - ones) & ^q & highs
	bs := x ^ (ones * '\\')
	hasBackslash := (bs - ones) & ^bs & highs
	return hasLess|hasQuote|hasBackslash|(x&highs) == 0
}

// appendJSONString appends s as a JSON string. Plain bytes are skipped
// eight at a time; a block holding something to escape is done byte by
// byte, then the fast path resumes: log text is mostly plain.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	// Read in place, eight bytes at a time: s is not written.
	raw := unsafe.Slice(unsafe.StringData(s), len(s))
	start := 0
	for i := 0; i < len(s); {
		for i+8 <= len(s) && plain8(binary.LittleEndian.Uint64(raw[i:])) {
			i += 8
		}
		for end := min(i+8, len(s)); i < end; {
			c := s[i]
			if c < utf8.RuneSelf {
				if c >= 0x20 && c != '"' && c != '\\' {
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
			switch {
			case r == utf8.RuneError && size == 1:
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				start = i + size
			case r == '\u2028' || r == '\u2029':
				b = append(b, s[start:i]...)
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
				start = i + size
			}
			i += size
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

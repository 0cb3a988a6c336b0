package run

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxOutputFile bounds what a step may write to $STELLA_OUTPUT.
const MaxOutputFile = 1 << 20

// readOutputs reads a step's output file: `name=value` lines and
// `name<<DELIM` … `DELIM` blocks, the convention GitHub Actions made
// familiar. A value that parses as JSON is that JSON value, otherwise the
// string. Only declared names are accepted; a name given twice keeps the
// last value.
func readOutputs(path string, declared []string) (map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxOutputFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxOutputFile {
		return nil, fmt.Errorf("more than %d bytes written to $%s", MaxOutputFile, OutputEnv)
	}
	return ParseOutputs(b, declared)
}

// ParseOutputs parses the output protocol (see readOutputs).
func ParseOutputs(b []byte, declared []string) (map[string]any, error) {
	allowed := map[string]bool{}
	for _, n := range declared {
		allowed[n] = true
	}
	out := map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), MaxOutputFile)
	line := 0
	set := func(name, value string) error {
		if name == "" {
			return fmt.Errorf("line %d: empty output name", line)
		}
		if !allowed[name] {
			return fmt.Errorf("line %d: output %q is not declared by the step (declared: %s)", line, name, strings.Join(declared, ", "))
		}
		var v any
		if json.Valid([]byte(value)) && strings.TrimSpace(value) != "" {
			_ = json.Unmarshal([]byte(value), &v)
		} else {
			v = value
		}
		out[name] = v
		return nil
	}
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		eq := strings.IndexByte(text, '=')
		heredoc := strings.Index(text, "<<")
		if heredoc >= 0 && (eq < 0 || heredoc < eq) {
			name, delim := text[:heredoc], text[heredoc+2:]
			if delim == "" {
				return nil, fmt.Errorf("line %d: %s<< without a delimiter", line, name)
			}
			start := line
			var val []string
			closed := false
			for sc.Scan() {
				line++
				l := strings.TrimSuffix(sc.Text(), "\r")
				if l == delim {
					closed = true
					break
				}
				val = append(val, l)
			}
			if !closed {
				return nil, fmt.Errorf("line %d: block %s<<%s is not closed by %s", start, name, delim, delim)
			}
			if err := set(name, strings.Join(val, "\n")); err != nil {
				return nil, err
			}
			continue
		}
		if eq < 0 {
			return nil, fmt.Errorf("line %d: expected name=value or name<<DELIM", line)
		}
		if err := set(text[:eq], text[eq+1:]); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errors.Join(fmt.Errorf("line %d", line+1), err)
	}
	return out, nil
}

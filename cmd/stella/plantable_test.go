package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"

	"stellaops.io/stella/display"
)

// TestWriteAlignedIsTabwriter: the plan's steps table, written without
// holding its rows, is byte for byte what text/tabwriter wrote before.
func TestWriteAlignedIsTabwriter(t *testing.T) {
	tables := map[string][][3]string{
		"header only": nil,
		"one":         {{"  a", "run", "pending"}},
		"mixed": {
			{"  fleet", "map", "pending"},
			{"    fleet[0]::touch", "run", "skipped"},
			{"    " + display.Line("é😀\t\x1b[31m\xff"), display.Line("\u202e"), display.Line("a\nb")},
			{"  " + strings.Repeat("x", 300), "", ""},
			{"", "requires-approval", "requires-policy"},
		},
	}
	for name, rows := range tables {
		rows = append([][3]string{{"  ID", "KIND", "STATUS"}}, rows...)
		var want bytes.Buffer
		fmt.Fprintf(&want, "\nsteps: %d\n", len(rows)-1)
		tw := tabwriter.NewWriter(&want, 2, 4, 2, ' ', 0)
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r[0], r[1], r[2])
		}
		tw.Flush()
		var got bytes.Buffer
		writeAligned(&got, "\nsteps: %d\n", func(fn func([3]string)) {
			for _, r := range rows {
				fn(r)
			}
		})
		if got.String() != want.String() {
			t.Errorf("%s: got\n%q\nwant\n%q", name, got.String(), want.String())
		}
	}
}

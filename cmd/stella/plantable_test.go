package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"text/tabwriter"

	"stellaops.io/stella/display"
)

// TestWriteAlignedIsTabwriter: the plan's steps table and the review's,
// written without holding their rows, are byte for byte what
// text/tabwriter wrote before (three cells and a count line; four cells and
// no head).
func TestWriteAlignedIsTabwriter(t *testing.T) {
	tables := map[string][][]string{
		"header only": nil,
		"one":         {{"  a", "run", "pending"}},
		"mixed": {
			{"  fleet", "map", "pending"},
			{"    fleet[0]::touch", "run", "skipped"},
			{"    " + display.Line("é😀\t\x1b[31m\xff"), display.Line("\u202e"), display.Line("a\nb")},
			{"  " + strings.Repeat("x", 300), "", ""},
			{"", "requires-approval", "requires-policy"},
		},
		"review": {
			{"    approve", "gate", "requires-approval", ""},
			{"    fleet", "map", "pending", ""},
			{"      fleet[0]::touch", "run", "pending", "sh touch.sh a 0"},
			{"    p", "gate", "decided: passes", "policy: " + display.Line("inputs.n > 3\t")},
			{"    " + display.Line("é😀\x1b"), "", "", "$'\\t'"},
		},
	}
	for name, rows := range tables {
		head := func(w io.Writer, n int) { fmt.Fprintf(w, "\nsteps: %d\n", n-1) }
		if name == "review" {
			head = nil
		} else {
			rows = append([][]string{{"  ID", "KIND", "STATUS"}}, rows...)
		}
		var want bytes.Buffer
		if head != nil {
			head(&want, len(rows))
		}
		tw := tabwriter.NewWriter(&want, 2, 4, 2, ' ', 0)
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\n", strings.Join(r, "\t"))
		}
		tw.Flush()
		var got bytes.Buffer
		writeAligned(&got, head, func(fn func(...string)) {
			for _, r := range rows {
				fn(r...)
			}
		})
		if got.String() != want.String() {
			t.Errorf("%s: got\n%q\nwant\n%q", name, got.String(), want.String())
		}
	}
}

// TestWriteJSONListIsWriteJSON: a result whose list is written item by
// item is byte for byte what writeJSON writes of it held whole: an empty
// list, one item, several, characters display.JSON escapes, an object
// with no other member.
func TestWriteJSONListIsWriteJSON(t *testing.T) {
	type item struct {
		ID   string   `json:"id"`
		Argv []string `json:"argv,omitempty"`
	}
	type head struct {
		Name   string         `json:"name"`
		Inputs map[string]any `json:"inputs"`
	}
	type whole struct {
		head
		Steps []item `json:"steps"`
	}
	type only struct {
		Steps []item `json:"steps"`
	}
	lists := map[string][]item{
		"empty": {},
		"one":   {{ID: "a"}},
		"several": {{ID: "a", Argv: []string{"sh", "-c", "echo <&>"}}, {ID: "é😀\x1b[31m\u202e\xff"},
			{ID: strings.Repeat("x", 5000), Argv: []string{""}}},
	}
	h := head{Name: "n\u2028\x07", Inputs: map[string]any{"b": []any{1.5, "x"}, "a": nil}}
	for name, list := range lists {
		for _, c := range []struct {
			head, whole any
		}{{h, whole{h, list}}, {struct{}{}, only{list}}} {
			var want, got bytes.Buffer
			if err := (&session{stdout: &want}).writeJSON(c.whole); err != nil {
				t.Fatal(err)
			}
			err := (&session{stdout: &got}).writeJSONList(c.head, "steps", func(fn func(any) error) error {
				for _, it := range list {
					if err := fn(it); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("%s, head %T: got\n%s\nwant\n%s", name, c.head, got.String(), want.String())
			}
		}
	}
	if err := (&session{stdout: io.Discard}).writeJSONList([]int{1}, "steps", func(func(any) error) error { return nil }); err == nil {
		t.Error("writeJSONList of a list head: no error")
	}
}

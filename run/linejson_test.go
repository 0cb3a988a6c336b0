package run

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// checkLineJSON: AppendJSON is valid JSON that decodes to the line (with
// invalid UTF-8 as U+FFFD, as encoding/json decodes it) and has the keys
// of encoding/json.
func checkLineJSON(t *testing.T, l Line) {
	t.Helper()
	got := l.AppendJSON(nil)
	if !json.Valid(got) {
		t.Fatalf("not JSON: %s", got)
	}
	var back Line
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	var want Line
	std, _ := json.Marshal(l)
	if err := json.Unmarshal(std, &want); err != nil {
		t.Fatal(err)
	}
	if !back.Time.Equal(want.Time) {
		t.Errorf("time %v, want %v", back.Time, want.Time)
	}
	back.Time = want.Time
	if (back.Data == nil) != (want.Data == nil) || (back.Data != nil && *back.Data != *want.Data) {
		t.Errorf("data %+v, want %+v", back.Data, want.Data)
	}
	back.Data, want.Data = nil, nil
	if back != want {
		t.Errorf("decoded %+v\nwant %+v\nfrom %s", back, want, got)
	}
	var a, b map[string]any
	_ = json.Unmarshal(std, &a)
	_ = json.Unmarshal(got, &b)
	if len(a) != len(b) {
		t.Errorf("keys %v, encoding/json %v", b, a)
	}
}

func TestLineAppendJSON(t *testing.T) {
	msgs := []string{"", "plain", `quote " back \ slash`, "tab\tnl\ncr\r", "<a href='x'>&amp;</a>", "\x00\x01\x1f\x7f\b\f",
		"héllo wörld ✓ 日本", "bad \xff\xfe utf8 \xc3", "sep \u2028 \u2029 end", "emoji 🙂", "12345678\"2345678\\", "1234567\n",
		strings.Repeat("line of text\n", 50)}
	for _, m := range msgs {
		for _, step := range []string{"", "a/b[0]"} {
			checkLineJSON(t, Line{Time: time.Date(2026, 11, 27, 18, 0, 0, 123456789, time.UTC), RunID: "run:t:1", PackID: "p:1.0", Tenant: "t", StepID: step, Stream: "stdout", Msg: m})
			checkLineJSON(t, Line{Time: time.Unix(5, 0).UTC(), StepID: step, Stream: "stderr", Data: &DataRef{Offset: 1 << 40, Length: int64(len(m))}})
		}
	}
}

func FuzzLineAppendJSON(f *testing.F) {
	f.Add("x\"\\\n\xff<")
	f.Add("abcdefgh\x08ijklmnop")
	f.Fuzz(func(t *testing.T, m string) {
		checkLineJSON(t, Line{Time: time.Unix(1, 5).UTC(), RunID: m, Stream: "stderr", Msg: m})
	})
}

func BenchmarkLineAppendJSON(b *testing.B) {
	var sb strings.Builder
	for sb.Len() < 32<<10 {
		sb.WriteString("2026-11-27T18:00:01.123Z INFO worker=12 msg=\"processed batch 1234 of 77 items\" id=00ab12cd34ef5678 took=12ms\n")
	}
	l := Line{Time: time.Now(), RunID: "run:t:1", PackID: "p:1", Tenant: "t", StepID: "s", Stream: "stdout", Msg: sb.String()}
	buf := make([]byte, 0, 64<<10)
	b.SetBytes(int64(len(l.Msg)))
	for i := 0; i < b.N; i++ {
		buf = l.AppendJSON(buf[:0])
	}
}

package run

import (
	"encoding/json"
	"testing"
	"time"
)

// TestLineAppendJSONMatchesEncodingJSON keeps the hand-written encoder
// byte-identical to encoding/json, whatever a step prints.
func TestLineAppendJSONMatchesEncodingJSON(t *testing.T) {
	msgs := []string{"", "plain", `quote " back \ slash`, "tab\tnl\ncr\r", "<a href='x'>&amp;</a>", "\x00\x01\x1f\x7f",
		"héllo wörld ✓ 日本", "bad \xff\xfe utf8 \xc3", "sep \u2028 \u2029 end", "emoji 🙂"}
	for _, m := range msgs {
		for _, step := range []string{"", "a/b[0]"} {
			l := Line{Time: time.Date(2026, 11, 27, 18, 0, 0, 123456789, time.UTC), RunID: "run:t:1", PackID: "p:1.0", Tenant: "t", StepID: step, Stream: "stdout", Msg: m}
			want, _ := json.Marshal(l)
			if got := l.AppendJSON(nil); string(got) != string(want) {
				t.Errorf("msg %q:\n got %s\nwant %s", m, got, want)
			}
		}
	}
}

func FuzzLineAppendJSON(f *testing.F) {
	f.Add("x\"\\\n\xff<")
	f.Fuzz(func(t *testing.T, m string) {
		l := Line{Time: time.Unix(1, 5).UTC(), RunID: m, Stream: "stderr", Msg: m}
		want, _ := json.Marshal(l)
		if got := l.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("got %s\nwant %s", got, want)
		}
	})
}

// Package redact masks secret values in everything a run writes: the one
// streaming, byte-level replacer that step output, outputs, logs and error
// messages pass through before anything is framed or stored.
//
// # Model
//
// A Set holds values. Each value registers patterns: the value, trimmed of
// surrounding whitespace, and its encodings, each kept only when at least
// MinLen bytes long and only once:
//
//   - base64, standard and URL alphabets: at each of the three alignments
//     the value can have inside a longer encoded blob (preceded by 0, 1 or
//     2 bytes modulo 3), the stable core, that is the characters whose bits
//     all come from the value; and the whole encoding of the value alone,
//     padded and unpadded;
//   - URL escaping: url.QueryEscape and url.PathEscape, with upper and
//     lower case hex digits;
//   - JSON string escaping, without the quotes: encoding/json's with and
//     without HTML escaping of <, > and &, every control character as
//     \u00xx and as \u00XX, non-ASCII as \uXXXX, and '/' as \/ (with and
//     without non-ASCII escaped);
//   - for a value given with surrounding whitespace, the encodings above
//     of it as given too (so that, for instance, the base64 of a token
//     file's content, newline included, is masked to its last character);
//   - for a multi-line value (UTF-8 text with a newline; a binary value
//     has no lines), each line, trimmed, that is at least MinLen bytes
//     long, with its encodings.
//
// A byte is masked when some occurrence of some pattern covers it, and each
// maximal run of masked bytes becomes one Mask: overlapping and adjacent
// occurrences merge, so no tail of a longer encoding stays visible and the
// number of masks does not tell how many values were next to each other.
//
// # Streaming
//
// A Writer masks a stream split into writes of any size, byte by byte
// included, and writes out exactly what Bytes makes of the whole stream.
// It holds back only the longest suffix of what it has been given that is
// a proper prefix of a pattern, since that suffix may begin a value that
// the next write completes; Flush, at the end of the stream, writes the
// held bytes out (masked where they match). The suffix is found by the
// patterns' Aho–Corasick automaton, started where the filters of the
// matcher say such a suffix can begin (on ordinary text, the last three
// bytes), so holding back costs the same whatever the size of the write.
//
// Add compiles nothing itself: the next use of the set (Bytes, String or
// any Writer's Write) compiles the patterns into an immutable matcher and
// swaps it in atomically, so adding many values compiles once (about
// 20 ms for 100 values). Writers load the current matcher at each Write:
// a value added later is masked from then on, but what a Writer wrote out
// before cannot be taken back, including the beginning of an occurrence
// split across that point.
//
// # Limits
//
// Only the encodings above are recognised: a value that a step prints in
// another form (hex, compressed, double JSON-escaped, split by other
// characters, one character per line) passes. At the ends of the stable
// core of a base64 encoding inside a longer blob, the one or two
// characters that mix the value's bits with its neighbours' stay visible
// (at most four bits of the value at each end). Values shorter than
// MinLen are refused with ErrTooShort rather than masked unsafely.
//
// # Performance
//
// The matcher samples one 4-byte block every m-3 bytes of the text (m the
// length of the shortest pattern: 16 or more for typical tokens, so every
// 13th byte), tests it against a 32 KiB filter of the blocks the patterns
// have at offsets below m-3, and looks up and verifies only what passes:
// the cost per byte depends on how short the shortest pattern is, and on
// the number of patterns only through what passes the filter by
// collision (1.4% of the samples of log text with 100 values). A Writer in a steady stream allocates
// nothing; ReadFrom reads straight into its buffer, so io.Copy into a
// Writer (what os/exec does with a command's output) adds no copy. Its
// reads land at a cache-line aligned address, what it holds back copied
// just before (the kernel copies into an unaligned address at a fraction
// of its speed), and from a pipe or a file that keeps it busy, it reads
// the next chunk on a goroutine of its own while it masks the last,
// unless it is Serial (a step's output: the step holds a core already);
// a Serial Writer reads and masks on the caller's goroutine and writes
// each masked chunk out on a second one, from the buffer it was read
// into, while it reads and masks the next.
//
// Measured on a 2-vCPU VM (BenchmarkWriter100Secrets against
// BenchmarkCopyBaseline, 100 random values of 16–40 bytes, about 1,600
// patterns, 64 MiB of log text): masking costs about 0.3 ns per byte over
// the copy; streamed into a file it takes about twice as long as copying
// the same bytes into a file (BenchmarkWriterToFile, BenchmarkCopyToFile).
package redact

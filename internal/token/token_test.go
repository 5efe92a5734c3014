package token

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	long := strings.Repeat("a", MaxOpaqueLen)
	cases := []struct {
		in   string
		want Kind
	}{
		{"", Invalid},
		{"short", Invalid},
		{strings.Repeat("a", MinOpaqueLen-1), Invalid},
		{strings.Repeat("a", MinOpaqueLen), Opaque},
		{long, Opaque},
		{long + "a", Invalid},
		{"abcdefghijklmnop+", Invalid},
		{"abcdefghijklmnop/", Invalid},
		{"abcdefghijklmnop=", Invalid},
		{"abcdefghijklmnop%41", Invalid},
		{"abcdefghij klmnop", Invalid},
		{"abcdefghijklmnop\x00", Invalid},
		{"abcdéfghijklmnopq", Invalid},
		{New(), Opaque},
		{"v1.eyJzdWIiOiJ1In0.c2ln", Signed},
		{"v1.eyJzdWIiOiJ1In0", Invalid},
		{"v1..c2ln", Invalid},
		{"v1.eyJ9.c2ln.", Invalid},
		{"v1.eyJ+.c2ln", Invalid},
		{"v1." + strings.Repeat("a", MaxSignedLen) + ".b", Invalid},
		{"v2.eyJzdWIiOiJ1In0.c2ln", Invalid},
	}
	for _, c := range cases {
		if got := Classify(c.in); got != c.want {
			t.Errorf("Classify(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestNewIsUniqueAndURLSafe(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := New()
		if len(s) != 43 || Classify(s) != Opaque {
			t.Fatalf("New() = %q: want 43 URL-safe characters", s)
		}
		if seen[s] {
			t.Fatalf("New() repeated %q", s)
		}
		seen[s] = true
	}
}

func TestHash(t *testing.T) {
	// sha256("abc"), a published test vector.
	if got := Hash("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("Hash(abc) = %s", got)
	}
	if got := LogID("abc"); got != "ba7816bf" {
		t.Fatalf("LogID(abc) = %s", got)
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"", New(), "v1.a.b", "v1.eyJzdWIiOiJ1In0.c2ln", "abcdefghijklmnop", "v1.", "v1..", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := Classify(s)
		if k == Invalid {
			return
		}
		if len(s) > MaxSignedLen {
			t.Fatalf("accepted %d bytes", len(s))
		}
		if strings.ContainsAny(s, "/+=%?#&\\ \t\r\n\x00") {
			t.Fatalf("accepted unsafe characters in %q", s)
		}
		if k == Opaque && (len(s) < MinOpaqueLen || len(s) > MaxOpaqueLen) {
			t.Fatalf("opaque token of length %d", len(s))
		}
	})
}

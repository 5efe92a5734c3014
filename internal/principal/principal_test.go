package principal

import (
	"strings"
	"testing"
)

func TestCheckUserID(t *testing.T) {
	good := []string{"alice", "hcp-7", "dr.jones@example.com", "Zoë Müller", "user with spaces", "李雷", strings.Repeat("a", 256)}
	for _, id := range good {
		if err := CheckUserID(id); err != nil {
			t.Errorf("CheckUserID(%q) = %v, want nil", id, err)
		}
	}
	bad := []string{
		"", " alias-user ", " alias", "alias ", "\talias", "alias\n", "\u00a0x", "x\u00a0", "\u3000x",
		"a\u200bb", "a\u200db", "\u202eevil", "a\ufeffb", "a\u2060b", "a\x00b", "a\x7fb", "a\u0085b",
		"a\u00a0b", "\xff", "a\xc0\xaeb", strings.Repeat("a", 257),
		"a\ufffdb", "org-a-x, admin", "a,b", "alias\u034f-user", "alias\ufe0f-user", "alias\u180b-user", "alias\u3164-user", "alias\u115f-user",
	}
	for _, id := range bad {
		if err := CheckUserID(id); err == nil {
			t.Errorf("CheckUserID(%q) = nil, want an error", id)
		}
	}
}

func TestCheckClaim(t *testing.T) {
	good := [][2]string{{"group", "org-a"}, {"role", ""}, {"a.b_c-d", "x y"}, {"ID", "ok: only id is reserved"}, {strings.Repeat("k", 64), strings.Repeat("v", 256)}}
	for _, c := range good {
		if err := CheckClaim(c[0], c[1]); err != nil {
			t.Errorf("CheckClaim(%q, %q) = %v, want nil", c[0], c[1], err)
		}
	}
	bad := [][2]string{
		{"id", "admin"}, {"", "v"}, {"a b", "v"}, {"a=b", "v"}, {"a;b", "v"}, {"é", "v"}, {strings.Repeat("k", 65), "v"},
		{"k", "a\nb"}, {"k", "a\rb"}, {"k", "\x00"}, {"k", "\x7f"}, {"k", "\u0085"}, {"k", "\xff"}, {"k", "a\ufffdb"}, {"k", strings.Repeat("v", 257)},
	}
	for _, c := range bad {
		if err := CheckClaim(c[0], c[1]); err == nil {
			t.Errorf("CheckClaim(%q, %q) = nil, want an error", c[0], c[1])
		}
	}
	if err := Check("alice", map[string]string{"id": "bob"}); err == nil {
		t.Error("Check with claim id = nil, want an error")
	}
	if err := Check(" alice", nil); err == nil {
		t.Error("Check with a padded user id = nil, want an error")
	}
}

package memory

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"time"

	"github.com/ssogate/ssogate/plugins/store"
	"github.com/ssogate/ssogate/plugins/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		m := New(time.Now, 50*time.Millisecond)
		t.Cleanup(func() { _ = m.Close() })
		// One process has one database: a peer is the same store.
		return m, func() store.Store { return m }
	})
}

func TestClaimsRoundTrip(t *testing.T) {
	for _, c := range []map[string]string{
		nil,
		{"group": "org-a"},
		{"a": "", "b": "x=y;z", "c": "ünï"},
	} {
		got := expandClaims(internClaims(c))
		if len(got) != len(c) {
			t.Fatalf("claims %v came back as %v", c, got)
		}
		for k, v := range c {
			if got[k] != v {
				t.Fatalf("claims %v came back as %v", c, got)
			}
		}
	}
}

func TestSweepFreesExpiredEntries(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	m := New(clock, time.Hour)
	defer m.Close()
	ctx := t.Context()
	_ = m.AddToken(ctx, "k", store.Token{UserID: "u"}, 30*time.Second)
	_, _ = m.UseOnce(ctx, "jti", 30*time.Second)
	_ = m.AddSession(ctx, "00000000000000000000000000000000000000000000000000000000000000aa", store.Session{UserID: "u", ExpiresAt: now.Add(time.Hour)}, time.Minute)
	now = now.Add(2 * time.Minute)
	m.db.sweep()
	if len(m.db.tokens)+len(m.db.used)+len(m.db.sessions) != 0 {
		t.Fatalf("sweep left %d tokens, %d ids, %d sessions", len(m.db.tokens), len(m.db.used), len(m.db.sessions))
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	var m Memory
	if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser("memory {\n sweep_interval 10s\n}")); err != nil {
		t.Fatal(err)
	}
	if time.Duration(m.SweepInterval) != 10*time.Second {
		t.Fatalf("sweep_interval = %v", time.Duration(m.SweepInterval))
	}
	for _, bad := range []string{"memory extra", "memory {\n sweep_interval\n}", "memory {\n sweep_interval -1s\n}", "memory {\n size 10\n}"} {
		if err := new(Memory).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

package memory

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

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
	if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser("memory {\n sweep_interval 10s\n max_entries 5000\n}")); err != nil {
		t.Fatal(err)
	}
	if time.Duration(m.SweepInterval) != 10*time.Second || m.MaxEntries != 5000 {
		t.Fatalf("sweep_interval = %v, max_entries = %d", time.Duration(m.SweepInterval), m.MaxEntries)
	}
	for _, bad := range []string{"memory extra", "memory {\n sweep_interval\n}", "memory {\n sweep_interval -1s\n}", "memory {\n size 10\n}", "memory {\n max_entries 0\n}", "memory {\n max_entries lots\n}"} {
		if err := new(Memory).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

func TestMaxEntries(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	m := New(func() time.Time { return now }, time.Hour)
	defer m.Close()
	m.SetMaxEntries(3)
	ctx := t.Context()
	if err := m.AddToken(ctx, "t1", store.Token{UserID: "u"}, time.Second); err != nil {
		t.Fatal(err)
	}
	if ok, err := m.UseOnce(ctx, "j1", time.Second); !ok || err != nil {
		t.Fatalf("UseOnce = %v, %v", ok, err)
	}
	s := "00000000000000000000000000000000000000000000000000000000000000aa"
	if err := m.AddSession(ctx, s, store.Session{UserID: "u", ExpiresAt: now.Add(time.Hour)}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := m.AddToken(ctx, "t2", store.Token{UserID: "u"}, time.Second); !errors.Is(err, store.ErrFull) {
		t.Fatalf("AddToken past max_entries = %v, want ErrFull", err)
	}
	if _, err := m.UseOnce(ctx, "j2", time.Second); !errors.Is(err, store.ErrFull) {
		t.Fatalf("UseOnce past max_entries = %v, want ErrFull", err)
	}
	other := "00000000000000000000000000000000000000000000000000000000000000bb"
	if err := m.AddSession(ctx, other, store.Session{UserID: "u", ExpiresAt: now.Add(time.Hour)}, time.Hour); !errors.Is(err, store.ErrFull) {
		t.Fatalf("AddSession past max_entries = %v, want ErrFull", err)
	}
	// A revocation is always recorded, full or not.
	if err := m.MarkRevoked(ctx, "u", store.Revocation{At: now}, time.Minute); err != nil {
		t.Fatalf("MarkRevoked on a full store: %v", err)
	}
	// Expired entries make room without waiting for the sweeper.
	now = now.Add(2 * time.Second)
	if err := m.AddToken(ctx, "t3", store.Token{UserID: "u"}, time.Second); err != nil {
		t.Fatalf("AddToken once entries expired: %v", err)
	}
	if n := m.db.len(); n != 2 {
		t.Fatalf("%d entries, want 2 (the session and t3)", n)
	}
}

// A reload's settings take effect on the shared database: the sweep
// interval and the limit of the config provisioned last.
func TestProvisionAppliesSettingsOnReload(t *testing.T) {
	first := &Memory{SweepInterval: caddy.Duration(time.Hour), MaxEntries: 10}
	if err := first.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	defer first.Cleanup()
	second := &Memory{SweepInterval: caddy.Duration(20 * time.Millisecond), MaxEntries: 1}
	if err := second.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	defer second.Cleanup()
	if first.db != second.db {
		t.Fatal("a reload got a database of its own: tokens and sessions would be lost")
	}
	ctx := t.Context()
	if err := second.AddToken(ctx, "a", store.Token{UserID: "u"}, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := second.AddToken(ctx, "b", store.Token{UserID: "u"}, time.Minute); !errors.Is(err, store.ErrFull) {
		t.Fatalf("the new max_entries 1 is not in force: %v", err)
	}
	// Only the new 20ms sweep interval frees the expired token in time.
	deadline := time.Now().Add(2 * time.Second)
	for second.db.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired token was not swept: the first config's sweep_interval is still in force")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Finding one session among many by its handle stays cheap.
func BenchmarkSessionByHandle(b *testing.B) {
	m := New(time.Now, time.Hour)
	defer m.Close()
	ctx := b.Context()
	var last string
	for i := range 100_000 {
		last = fmt.Sprintf("%064x", i)
		if err := m.AddSession(ctx, last, store.Session{UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	h := store.SessionHandle(last)
	for b.Loop() {
		if _, err := m.SessionByHandle(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
}

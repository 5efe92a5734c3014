// Package storetest is the conformance suite every ssogate store must pass. Each
// implementation's own tests call Run with a constructor for a fresh, empty store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssogate/ssogate/internal/token"
	"github.com/ssogate/ssogate/plugins/store"
)

// Run runs the whole suite against stores made by newStore. Every call of
// newStore must give a store that shares nothing with earlier ones, except when
// the test asks for a Peer: then a second handle onto the same data, as a second
// gateway instance would have.
func Run(t *testing.T, newStore func(t *testing.T) (s store.Store, peer func() store.Store)) {
	runSessionAdmin(t, newStore)

	t.Run("TokenRoundTrip", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		key := token.Hash(token.New())
		want := store.Token{UserID: "u1", Claims: map[string]string{"group": "org-a"}, Redirect: "/x#/y", CreatedBy: "cred", IssuedAt: time.Now().UTC().Format(time.RFC3339)}
		if err := s.AddToken(ctx, key, want, 30*time.Second); err != nil {
			t.Fatalf("AddToken: %v", err)
		}
		if err := s.AddToken(ctx, key, want, 30*time.Second); !errors.Is(err, store.ErrExists) {
			t.Fatalf("second AddToken = %v, want ErrExists", err)
		}
		got, err := s.TakeToken(ctx, key)
		if err != nil {
			t.Fatalf("TakeToken: %v", err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("TakeToken = %+v, want %+v", got, want)
		}
		if _, err := s.TakeToken(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second TakeToken = %v, want ErrNotFound", err)
		}
	})

	t.Run("Ping", func(t *testing.T) {
		s, _ := newStore(t)
		if err := s.Ping(context.Background()); err != nil {
			t.Fatalf("Ping of a working store = %v, want nil", err)
		}
	})

	t.Run("TokenUnknown", func(t *testing.T) {
		s, _ := newStore(t)
		if _, err := s.TakeToken(context.Background(), token.Hash("nope")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("TakeToken(unknown) = %v, want ErrNotFound", err)
		}
	})

	t.Run("TokenExpires", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		key := token.Hash(token.New())
		if err := s.AddToken(ctx, key, store.Token{UserID: "u"}, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		// Redeeming probes would consume the token, so wait well past its TTL
		// and look once.
		time.Sleep(300 * time.Millisecond)
		if _, err := s.TakeToken(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("TakeToken past the TTL = %v, want ErrNotFound", err)
		}
	})

	t.Run("TakeTokenExactlyOnce", func(t *testing.T) {
		s, peer := newStore(t)
		stores := []store.Store{s, peer()}
		ctx := context.Background()
		for round := range 5 {
			key := token.Hash(token.New())
			if err := s.AddToken(ctx, key, store.Token{UserID: "u"}, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			var wins, misses atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, err := stores[i%2].TakeToken(ctx, key)
					switch {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, store.ErrNotFound):
						misses.Add(1)
					default:
						t.Errorf("TakeToken: %v", err)
					}
				}()
			}
			close(start)
			wg.Wait()
			if wins.Load() != 1 || misses.Load() != 99 {
				t.Fatalf("round %d: %d wins, %d misses; want exactly 1 and 99", round, wins.Load(), misses.Load())
			}
		}
	})

	t.Run("UseOnce", func(t *testing.T) {
		s, peer := newStore(t)
		ctx := context.Background()
		id := "jti-" + token.New()
		ok, err := s.UseOnce(ctx, id, 30*time.Second)
		if err != nil || !ok {
			t.Fatalf("first UseOnce = %v, %v; want true", ok, err)
		}
		ok, err = peer().UseOnce(ctx, id, 30*time.Second)
		if err != nil || ok {
			t.Fatalf("second UseOnce = %v, %v; want false", ok, err)
		}
	})

	t.Run("SessionLifecycle", func(t *testing.T) {
		s, peer := newStore(t)
		ctx := context.Background()
		key := token.Hash(token.New())
		now := time.Now().UTC().Truncate(time.Second)
		want := store.Session{UserID: "u1", Claims: map[string]string{"group": "org-a"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour), CreatedBy: "emr-org-a"}
		if err := s.AddSession(ctx, key, want, time.Minute); err != nil {
			t.Fatalf("AddSession: %v", err)
		}
		got, err := peer().Session(ctx, key, time.Minute)
		if err != nil {
			t.Fatalf("Session: %v", err)
		}
		if !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || got.UserID != want.UserID || got.Claims["group"] != "org-a" || got.CreatedBy != "emr-org-a" {
			t.Fatalf("Session = %+v, want %+v", got, want)
		}
		if err := s.DeleteSession(ctx, key); err != nil {
			t.Fatalf("DeleteSession: %v", err)
		}
		if _, err := peer().Session(ctx, key, 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Session after delete = %v, want ErrNotFound", err)
		}
		if err := s.DeleteSession(ctx, key); err != nil {
			t.Fatalf("DeleteSession of a missing session = %v, want nil", err)
		}
	})

	t.Run("SessionIdleExpiryAndTouch", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		touched, idle := token.Hash(token.New()), token.Hash(token.New())
		sess := store.Session{UserID: "u", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		const ttl = 400 * time.Millisecond
		for _, k := range []string{touched, idle} {
			if err := s.AddSession(ctx, k, sess, ttl); err != nil {
				t.Fatal(err)
			}
		}
		// Touch one session well inside its idle window, repeatedly, while the
		// other is left alone: only the untouched one may expire.
		deadline := time.Now().Add(3 * time.Second)
		for {
			if _, err := s.Session(ctx, touched, ttl); err != nil {
				t.Fatalf("touched session lost: %v", err)
			}
			if _, err := s.Session(ctx, idle, 0); errors.Is(err, store.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("idle session never expired")
			}
			time.Sleep(ttl / 8)
		}
	})

	t.Run("RevokeUser", func(t *testing.T) {
		s, peer := newStore(t)
		ctx := context.Background()
		sess := func(user string) store.Session {
			return store.Session{UserID: user, CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		}
		var aliceKeys []string
		for range 3 {
			k := token.Hash(token.New())
			aliceKeys = append(aliceKeys, k)
			if err := s.AddSession(ctx, k, sess("alice"), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		bob := token.Hash(token.New())
		if err := s.AddSession(ctx, bob, sess("bob"), time.Minute); err != nil {
			t.Fatal(err)
		}

		var mu sync.Mutex
		var seen []store.Invalidation
		other := peer()
		cancel := other.Subscribe(func(inv store.Invalidation) {
			mu.Lock()
			seen = append(seen, inv)
			mu.Unlock()
		})
		defer cancel()
		waitSubscribed(t, s, other)

		n, err := s.RevokeUser(ctx, "alice")
		if err != nil || n != 3 {
			t.Fatalf("RevokeUser = %d, %v; want 3", n, err)
		}
		for _, k := range aliceKeys {
			if _, err := other.Session(ctx, k, 0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("revoked session still there: %v", err)
			}
		}
		if _, err := other.Session(ctx, bob, 0); err != nil {
			t.Fatalf("another user's session was revoked: %v", err)
		}
		waitUntil(t, 2*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, inv := range seen {
				if inv.UserID == "alice" {
					return true
				}
			}
			return false
		}, "the peer never heard of the revocation")
		if n, err := s.RevokeUser(ctx, "alice"); err != nil || n != 0 {
			t.Fatalf("second RevokeUser = %d, %v; want 0", n, err)
		}
	})

	t.Run("LogoutReachesPeers", func(t *testing.T) {
		s, peer := newStore(t)
		ctx := context.Background()
		key := token.Hash(token.New())
		if err := s.AddSession(ctx, key, store.Session{UserID: "u", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}, time.Minute); err != nil {
			t.Fatal(err)
		}
		got := make(chan store.Invalidation, 16)
		other := peer()
		cancel := other.Subscribe(func(inv store.Invalidation) {
			select {
			case got <- inv:
			default:
			}
		})
		defer cancel()
		waitSubscribed(t, s, other)
		if err := s.DeleteSession(ctx, key); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(2 * time.Second)
		for {
			select {
			case inv := <-got:
				if inv.SessionKey == key {
					return
				}
			case <-timeout:
				t.Fatal("the peer never heard of the logout")
			}
		}
	})
}

// runSessionAdmin is the part of the suite for listing, ending chosen
// sessions, revocation marks and proof of currency.
func runSessionAdmin(t *testing.T, newStore func(t *testing.T) (s store.Store, peer func() store.Store)) {
	live := func(user string, claims map[string]string, by string, life time.Duration) store.Session {
		now := time.Now().UTC().Truncate(time.Millisecond)
		return store.Session{UserID: user, Claims: claims, CreatedAt: now, ExpiresAt: now.Add(life), CreatedBy: by}
	}

	t.Run("ListSessions", func(t *testing.T) {
		s, peer := newStore(t)
		ctx := context.Background()
		a1, a2, b := token.Hash(token.New()), token.Hash(token.New()), token.Hash(token.New())
		before := time.Now()
		for k, sess := range map[string]store.Session{
			a1: live("alice", map[string]string{"group": "org-a"}, "emr-org-a", time.Hour),
			a2: live("alice", map[string]string{"group": "org-b"}, "signed:k1", time.Hour),
			b:  live("bob", nil, "", time.Hour),
		} {
			if err := s.AddSession(ctx, k, sess, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		got, err := peer().Sessions(ctx, "alice")
		if err != nil {
			t.Fatalf("Sessions: %v", err)
		}
		byKey := map[string]store.Listed{}
		for _, l := range got {
			byKey[l.Key] = l
		}
		if len(got) != 2 || byKey[a1].Claims["group"] != "org-a" || byKey[a2].CreatedBy != "signed:k1" || byKey[a1].CreatedBy != "emr-org-a" {
			t.Fatalf("Sessions(alice) = %+v, want a1 (org-a, emr-org-a) and a2 (org-b, signed:k1)", got)
		}
		for _, l := range got {
			if l.IdleUntil.Before(before.Add(time.Minute-time.Second)) || l.IdleUntil.After(time.Now().Add(time.Minute+time.Second)) {
				t.Fatalf("IdleUntil %v: want about a minute from now", l.IdleUntil)
			}
		}
		if err := s.DeleteSession(ctx, a1); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Sessions(ctx, "alice"); err != nil || len(got) != 1 || got[0].Key != a2 {
			t.Fatalf("Sessions after a logout = %+v, %v; want a2 alone", got, err)
		}
		if got, err := s.Sessions(ctx, "nobody"); err != nil || len(got) != 0 {
			t.Fatalf("Sessions(nobody) = %+v, %v; want none", got, err)
		}
	})

	t.Run("SessionByHandle", func(t *testing.T) {
		s, peer := newStore(t)
		ctx := context.Background()
		k := token.Hash(token.New())
		if err := s.AddSession(ctx, k, live("carol", nil, "c", time.Hour), time.Minute); err != nil {
			t.Fatal(err)
		}
		h := store.SessionHandle(k)
		if len(h) != 22 || h == k[:22] {
			t.Fatalf("handle %q: want 22 characters that are not the key's", h)
		}
		got, err := peer().SessionByHandle(ctx, h)
		if err != nil || got.Key != k || got.UserID != "carol" {
			t.Fatalf("SessionByHandle = %+v, %v; want carol's session", got, err)
		}
		if _, err := s.SessionByHandle(ctx, store.SessionHandle(token.Hash("other"))); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("SessionByHandle(unknown) = %v, want ErrNotFound", err)
		}
		if err := s.DeleteSession(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SessionByHandle(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("SessionByHandle after logout = %v, want ErrNotFound", err)
		}
	})

	t.Run("EndSessions", func(t *testing.T) {
		s, peer := newStore(t)
		ctx := context.Background()
		end, keep := token.Hash(token.New()), token.Hash(token.New())
		for _, k := range []string{end, keep} {
			if err := s.AddSession(ctx, k, live("dave", nil, "", time.Hour), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		heard := make(chan string, 16)
		other := peer()
		cancel := other.Subscribe(func(inv store.Invalidation) {
			select {
			case heard <- inv.SessionKey:
			default:
			}
		})
		defer cancel()
		waitSubscribed(t, s, other)
		n, err := s.EndSessions(ctx, "dave", []string{end})
		if err != nil || n != 1 {
			t.Fatalf("EndSessions = %d, %v; want 1", n, err)
		}
		if _, err := other.Session(ctx, end, 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ended session: %v, want ErrNotFound", err)
		}
		if _, err := other.Session(ctx, keep, 0); err != nil {
			t.Fatalf("the session not named was ended: %v", err)
		}
		if n, err := s.EndSessions(ctx, "dave", []string{end}); err != nil || n != 0 {
			t.Fatalf("EndSessions again = %d, %v; want 0 (counts only what it ended)", n, err)
		}
		timeout := time.After(2 * time.Second)
		for k := ""; k != end; {
			select {
			case k = <-heard:
			case <-timeout:
				t.Fatal("the peer never heard of the ended session")
			}
		}
	})

	// The user index must outlive every session it lists, also when a
	// later session is shorter-lived (session_ttl lowered by a reload).
	t.Run("IndexOutlivesShorterSession", func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		long, short := token.Hash(token.New()), token.Hash(token.New())
		if err := s.AddSession(ctx, long, live("erin", nil, "", time.Hour), time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.AddSession(ctx, short, live("erin", nil, "", 200*time.Millisecond), 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if got, err := s.Sessions(ctx, "erin"); err != nil || len(got) != 1 || got[0].Key != long {
			t.Fatalf("Sessions after the short one expired = %+v, %v; want the long one", got, err)
		}
		if n, err := s.RevokeUser(ctx, "erin"); err != nil || n != 1 {
			t.Fatalf("RevokeUser = %d, %v; want 1", n, err)
		}
		if _, err := s.Session(ctx, long, 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the long session survived its revocation: %v", err)
		}
	})

	t.Run("Revocations", func(t *testing.T) {
		s, peer := newStore(t)
		ctx := context.Background()
		t0 := time.Now().UTC().Truncate(time.Millisecond)
		orgA := map[string]string{"group": "org-a"}
		for _, r := range []store.Revocation{{Claims: orgA, At: t0}, {Claims: orgA, At: t0.Add(-time.Second)}, {At: t0.Add(time.Second)}} {
			if err := s.MarkRevoked(ctx, "frank", r, 400*time.Millisecond); err != nil {
				t.Fatalf("MarkRevoked: %v", err)
			}
		}
		got, err := peer().Revocations(ctx, "frank")
		if err != nil || len(got) != 2 {
			t.Fatalf("Revocations = %+v, %v; want one per tenant", got, err)
		}
		for _, r := range got {
			switch {
			case r.Claims["group"] == "org-a" && len(r.Claims) == 1:
				if !r.At.Equal(t0) {
					t.Errorf("org-a mark at %v, want the later %v", r.At, t0)
				}
			case len(r.Claims) == 0:
				if !r.At.Equal(t0.Add(time.Second)) {
					t.Errorf("mark without claims at %v, want %v", r.At, t0.Add(time.Second))
				}
			default:
				t.Errorf("unexpected mark %+v", r)
			}
		}
		if got, err := s.Revocations(ctx, "grace"); err != nil || len(got) != 0 {
			t.Fatalf("Revocations(grace) = %+v, %v; want none", got, err)
		}
		waitUntil(t, 3*time.Second, func() bool {
			got, err := s.Revocations(ctx, "frank")
			return err == nil && len(got) == 0
		}, "revocation marks never expired")
	})

	t.Run("EventsCurrent", func(t *testing.T) {
		s, _ := newStore(t)
		waitUntil(t, 5*time.Second, func() bool {
			return s.EventsCurrent(time.Now().UnixNano())
		}, "the store never proved it hears every invalidation")
		if s.EventsCurrent(time.Now().Add(time.Hour).UnixNano()) && !alwaysCurrent(s) {
			t.Fatal("a proof an hour old still counts as current")
		}
	})
}

// alwaysCurrent tells a store whose invalidations are synchronous (one
// process), for which every moment is current.
func alwaysCurrent(s store.Store) bool {
	return s.EventsCurrent(1<<62) && s.EventsCurrent(0)
}

// waitSubscribed makes sure other's subscription is live before the test acts,
// by ending a throwaway session until other hears of one.
func waitSubscribed(t *testing.T, s, other store.Store) {
	t.Helper()
	var heard atomic.Bool
	probe := token.Hash(token.New())
	cancel := other.Subscribe(func(inv store.Invalidation) {
		if inv.SessionKey == probe {
			heard.Store(true)
		}
	})
	defer cancel()
	waitUntil(t, 3*time.Second, func() bool {
		if err := s.DeleteSession(context.Background(), probe); err != nil {
			t.Fatal(err)
		}
		return heard.Load()
	}, "subscription never became live")
}

func waitUntil(t *testing.T, limit time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

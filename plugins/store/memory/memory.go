// Package memory is the embedded ssogate store: one gateway instance, no
// dependencies, kept across `caddy reload`.
package memory

import (
	"context"
	"encoding/hex"
	"sort"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/caddyserver/caddy/v2"

	"github.com/ssogate/ssogate/plugins/store"
)

func init() {
	caddy.RegisterModule(Memory{})
}

// databases shares one database between every config that uses the memory
// store, so a reload keeps every token and session.
var databases = caddy.NewUsagePool()

// poolKey is the only key in databases: one process, one embedded store.
const poolKey = "memory"

// Memory keeps tokens and sessions in this process. It has the same semantics as
// the redis store (atomic single use, idle and absolute expiry), but only for a
// single gateway instance: with several instances, use the redis store.
type Memory struct {
	// How often expired entries are swept away. They are refused as soon as
	// they expire either way; sweeping only frees their memory. Default: 1m.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	db *database
}

// CaddyModule returns the Caddy module information.
func (Memory) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "ssogate.stores.memory",
		New: func() caddy.Module { return new(Memory) },
	}
}

// Provision attaches to the process-wide database, creating it on first use.
func (m *Memory) Provision(caddy.Context) error {
	every := time.Duration(m.SweepInterval)
	if every <= 0 {
		every = time.Minute
	}
	val, _, err := databases.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		return newDatabase(time.Now, every), nil
	})
	if err != nil {
		return err
	}
	m.db = val.(*database)
	return nil
}

// Cleanup releases this config's hold on the database; the last one stops it.
func (m *Memory) Cleanup() error {
	_, err := databases.Delete(poolKey)
	return err
}

// New returns a memory store of its own, outside any Caddy config (for tests and
// benchmarks). Close stops its sweeper.
func New(now func() time.Time, sweepEvery time.Duration) *Memory {
	return &Memory{db: newDatabase(now, sweepEvery)}
}

// Close stops a store made by New.
func (m *Memory) Close() error { return m.db.Destruct() }

// AddToken implements store.Store.
func (m *Memory) AddToken(_ context.Context, key string, t store.Token, ttl time.Duration) error {
	return m.db.addToken(key, t, ttl)
}

// TakeToken implements store.Store.
func (m *Memory) TakeToken(_ context.Context, key string) (store.Token, error) {
	return m.db.takeToken(key)
}

// UseOnce implements store.Store.
func (m *Memory) UseOnce(_ context.Context, id string, ttl time.Duration) (bool, error) {
	return m.db.useOnce(id, ttl), nil
}

// AddSession implements store.Store.
func (m *Memory) AddSession(_ context.Context, key string, s store.Session, idle time.Duration) error {
	return m.db.addSession(key, s, idle)
}

// Session implements store.Store.
func (m *Memory) Session(_ context.Context, key string, idle time.Duration) (store.Session, error) {
	return m.db.session(key, idle)
}

// DeleteSession implements store.Store.
func (m *Memory) DeleteSession(_ context.Context, key string) error {
	m.db.deleteSession(key)
	return nil
}

// RevokeUser implements store.Store.
func (m *Memory) RevokeUser(_ context.Context, userID string) (int, error) {
	return m.db.revokeUser(userID), nil
}

// Ping implements store.Store: the embedded store always answers.
func (m *Memory) Ping(context.Context) error { return nil }

// Subscribe implements store.Store.
func (m *Memory) Subscribe(fn func(store.Invalidation)) func() {
	return m.db.subs.Add(fn)
}

// database is the state behind every Memory of the process.
type database struct {
	now func() time.Time

	mu       sync.Mutex
	tokens   map[string]tokenEntry
	used     map[string]int64 // single-use ids → expiry, unix nanoseconds
	sessions map[[32]byte]sessionEntry

	subs store.Subscribers
	stop chan struct{}
	done chan struct{}
}

type tokenEntry struct {
	token   store.Token
	expires int64
}

// sessionEntry is kept small because a busy portal holds many sessions: times
// as unix nanoseconds, and the claims as a handle onto one shared canonical
// string, since most sessions of one organisation carry the same claims.
type sessionEntry struct {
	userID    string
	claims    unique.Handle[string]
	created   int64
	expires   int64 // absolute
	idleUntil int64
}

func newDatabase(now func() time.Time, sweepEvery time.Duration) *database {
	db := &database{
		now:      now,
		tokens:   make(map[string]tokenEntry),
		used:     make(map[string]int64),
		sessions: make(map[[32]byte]sessionEntry),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go db.sweepEvery(sweepEvery)
	return db
}

// Destruct stops the sweeper; it implements caddy.Destructor.
func (db *database) Destruct() error {
	close(db.stop)
	<-db.done
	return nil
}

func (db *database) sweepEvery(d time.Duration) {
	defer close(db.done)
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-tick.C:
			db.sweep()
		}
	}
}

func (db *database) sweep() {
	now := db.now().UnixNano()
	db.mu.Lock()
	defer db.mu.Unlock()
	for k, e := range db.tokens {
		if e.expires <= now {
			delete(db.tokens, k)
		}
	}
	for k, exp := range db.used {
		if exp <= now {
			delete(db.used, k)
		}
	}
	for k, e := range db.sessions {
		if e.idleUntil <= now || e.expires <= now {
			delete(db.sessions, k)
		}
	}
}

func (db *database) addToken(key string, t store.Token, ttl time.Duration) error {
	now := db.now().UnixNano()
	db.mu.Lock()
	defer db.mu.Unlock()
	if e, ok := db.tokens[key]; ok && e.expires > now {
		return store.ErrExists
	}
	db.tokens[key] = tokenEntry{token: t, expires: now + int64(ttl)}
	return nil
}

func (db *database) takeToken(key string) (store.Token, error) {
	now := db.now().UnixNano()
	db.mu.Lock()
	defer db.mu.Unlock()
	e, ok := db.tokens[key]
	if !ok {
		return store.Token{}, store.ErrNotFound
	}
	delete(db.tokens, key)
	if e.expires <= now {
		return store.Token{}, store.ErrNotFound
	}
	return e.token, nil
}

func (db *database) useOnce(id string, ttl time.Duration) bool {
	now := db.now().UnixNano()
	db.mu.Lock()
	defer db.mu.Unlock()
	if exp, ok := db.used[id]; ok && exp > now {
		return false
	}
	db.used[id] = now + int64(ttl)
	return true
}

func (db *database) addSession(key string, s store.Session, idle time.Duration) error {
	k, err := sessionKey(key)
	if err != nil {
		return err
	}
	now := db.now().UnixNano()
	e := sessionEntry{
		userID:    s.UserID,
		claims:    internClaims(s.Claims),
		created:   s.CreatedAt.UnixNano(),
		expires:   s.ExpiresAt.UnixNano(),
		idleUntil: now + int64(idle),
	}
	db.mu.Lock()
	db.sessions[k] = e
	db.mu.Unlock()
	return nil
}

func (db *database) session(key string, idle time.Duration) (store.Session, error) {
	k, err := sessionKey(key)
	if err != nil {
		return store.Session{}, store.ErrNotFound
	}
	now := db.now().UnixNano()
	db.mu.Lock()
	e, ok := db.sessions[k]
	if ok && (e.idleUntil <= now || e.expires <= now) {
		delete(db.sessions, k)
		ok = false
	}
	if ok && idle > 0 {
		e.idleUntil = now + int64(idle)
		db.sessions[k] = e
	}
	db.mu.Unlock()
	if !ok {
		return store.Session{}, store.ErrNotFound
	}
	return store.Session{
		UserID:    e.userID,
		Claims:    expandClaims(e.claims),
		CreatedAt: time.Unix(0, e.created).UTC(),
		ExpiresAt: time.Unix(0, e.expires).UTC(),
	}, nil
}

func (db *database) deleteSession(key string) {
	if k, err := sessionKey(key); err == nil {
		db.mu.Lock()
		delete(db.sessions, k)
		db.mu.Unlock()
	}
	db.subs.Publish(store.Invalidation{SessionKey: key})
}

// revokeUser walks every session rather than keeping a per-user index: revoking
// is a rare admin call, and an index would cost memory on every session.
func (db *database) revokeUser(userID string) int {
	now := db.now().UnixNano()
	n := 0
	db.mu.Lock()
	for k, e := range db.sessions {
		if e.userID == userID {
			delete(db.sessions, k)
			if e.idleUntil > now && e.expires > now {
				n++
			}
		}
	}
	db.mu.Unlock()
	db.subs.Publish(store.Invalidation{UserID: userID})
	return n
}

func sessionKey(key string) ([32]byte, error) {
	var k [32]byte
	if len(key) != 64 {
		return k, store.ErrNotFound
	}
	if _, err := hex.Decode(k[:], []byte(key)); err != nil {
		return k, store.ErrNotFound
	}
	return k, nil
}

// internClaims encodes claims canonically (sorted, NUL-separated, which no key
// or value may contain unnoticed since both are length-free strings joined by
// separators absent from valid claims) and interns the result.
func internClaims(c map[string]string) unique.Handle[string] {
	if len(c) == 0 {
		return unique.Handle[string]{}
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(c[k])
		b.WriteByte(0)
	}
	return unique.Make(b.String())
}

func expandClaims(h unique.Handle[string]) map[string]string {
	if h == (unique.Handle[string]{}) {
		return nil
	}
	parts := strings.Split(strings.TrimSuffix(h.Value(), "\x00"), "\x00")
	m := make(map[string]string, len(parts)/2)
	for i := 0; i+1 < len(parts); i += 2 {
		m[parts[i]] = parts[i+1]
	}
	return m
}

// Interface guards
var (
	_ store.Store        = (*Memory)(nil)
	_ caddy.Provisioner  = (*Memory)(nil)
	_ caddy.CleanerUpper = (*Memory)(nil)
	_ caddy.Destructor   = (*database)(nil)
)

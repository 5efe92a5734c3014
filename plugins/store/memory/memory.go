// Package memory is the embedded ssogate store: one gateway instance, no
// dependencies, kept across `caddy reload`.
package memory

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
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
//
// The database is shared by every config of the process and survives a
// reload; the settings of the config loaded last are the ones in force.
type Memory struct {
	// How often expired entries are swept away. They are refused as soon as
	// they expire either way; sweeping only frees their memory. Default: 1m.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`
	// Tokens, single-use ids and sessions held at most, together. Past it,
	// minting and sign-in fail with 503 store_full until entries expire,
	// rather than let memory grow without bound. Revocation marks are not
	// counted: a revocation must always work, and each mark lives at most
	// 5 minutes. Default: 1000000 (a few hundred MB at most).
	MaxEntries int `json:"max_entries,omitempty"`

	db *database
}

// defaultMaxEntries bounds the embedded store: a session takes about 200
// bytes, a token a little more.
const defaultMaxEntries = 1_000_000

// CaddyModule returns the Caddy module information.
func (Memory) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "ssogate.stores.memory",
		New: func() caddy.Module { return new(Memory) },
	}
}

// Provision attaches to the process-wide database, creating it on first use,
// and puts this config's settings in force.
func (m *Memory) Provision(caddy.Context) error {
	val, _, err := databases.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		return newDatabase(time.Now, m.sweepEvery()), nil
	})
	if err != nil {
		return err
	}
	m.db = val.(*database)
	m.db.configure(m.sweepEvery(), m.maxEntries())
	return nil
}

// Validate refuses a negative limit.
func (m *Memory) Validate() error {
	if m.MaxEntries < 0 {
		return fmt.Errorf("memory store: max_entries %d: must be positive", m.MaxEntries)
	}
	return nil
}

func (m *Memory) sweepEvery() time.Duration {
	if every := time.Duration(m.SweepInterval); every > 0 {
		return every
	}
	return time.Minute
}

func (m *Memory) maxEntries() int {
	if m.MaxEntries > 0 {
		return m.MaxEntries
	}
	return defaultMaxEntries
}

// Cleanup releases this config's hold on the database; the last one stops it.
func (m *Memory) Cleanup() error {
	_, err := databases.Delete(poolKey)
	return err
}

// New returns a memory store of its own, outside any Caddy config (for tests and
// benchmarks), holding at most the default number of entries. Close stops its
// sweeper.
func New(now func() time.Time, sweepEvery time.Duration) *Memory {
	m := &Memory{db: newDatabase(now, sweepEvery)}
	m.db.configure(sweepEvery, defaultMaxEntries)
	return m
}

// Close stops a store made by New.
func (m *Memory) Close() error { return m.db.Destruct() }

// SetMaxEntries changes the limit of a store made by New.
func (m *Memory) SetMaxEntries(n int) { m.db.configure(0, n) }

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
	return m.db.useOnce(id, ttl)
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

// Sessions implements store.Store.
func (m *Memory) Sessions(_ context.Context, userID string) ([]store.Listed, error) {
	return m.db.sessionsOf(userID), nil
}

// SessionByHandle implements store.Store.
func (m *Memory) SessionByHandle(_ context.Context, handle string) (store.Listed, error) {
	return m.db.sessionByHandle(handle)
}

// EndSessions implements store.Store.
func (m *Memory) EndSessions(_ context.Context, userID string, keys []string) (int, error) {
	return m.db.endSessions(userID, keys), nil
}

// MarkRevoked implements store.Store.
func (m *Memory) MarkRevoked(_ context.Context, userID string, r store.Revocation, ttl time.Duration) error {
	m.db.markRevoked(userID, r, ttl)
	return nil
}

// Revocations implements store.Store.
func (m *Memory) Revocations(_ context.Context, userID string) ([]store.Revocation, error) {
	return m.db.revocations(userID), nil
}

// Subscribe implements store.Store.
func (m *Memory) Subscribe(fn func(store.Invalidation)) func() {
	return m.db.subs.Add(fn)
}

// EventsCurrent implements store.Store: the memory store tells its
// subscribers of every change before the change's call returns.
func (m *Memory) EventsCurrent(int64) bool { return true }

// database is the state behind every Memory of the process.
type database struct {
	now func() time.Time

	mu       sync.Mutex
	tokens   map[string]tokenEntry
	used     map[string]int64 // single-use ids → expiry, unix nanoseconds
	sessions map[[32]byte]sessionEntry
	marks    map[string]map[string]markEntry // user → canonical claims → mark
	// max bounds len(tokens)+len(used)+len(sessions); every is the sweep
	// interval in force. Both change when a config is loaded.
	max       int
	every     time.Duration
	lastSweep int64 // unix nanoseconds of the last sweep made because full

	subs   store.Subscribers
	retime chan struct{} // wakes the sweeper when every changes
	stop   chan struct{}
	done   chan struct{}
}

type tokenEntry struct {
	token   store.Token
	expires int64
}

// sessionEntry is kept small because a busy portal holds many sessions: times
// as unix nanoseconds, and the claims and creator as handles onto shared
// canonical strings, since most sessions of one organisation carry the same.
type sessionEntry struct {
	userID    string
	claims    unique.Handle[string]
	createdBy unique.Handle[string]
	created   int64
	expires   int64 // absolute
	idleUntil int64
	// tag is the first 64 bits of the session's public handle, so that
	// finding a session by handle compares integers, not hashes.
	tag uint64
}

// handleTag is the first 64 bits a handle's first 11 characters encode;
// false if they are not base64url.
func handleTag(handle string) (uint64, bool) {
	var b [9]byte
	if len(handle) < 11 {
		return 0, false
	}
	n, err := base64.RawURLEncoding.Decode(b[:], []byte(handle[:11]))
	if err != nil || n < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[:8]), true
}

type markEntry struct {
	claims  map[string]string
	at      int64
	expires int64
}

// fullSweepEvery bounds how often a full store sweeps to make room: a sweep
// walks every entry under the lock, and a flood of refused requests must not
// turn into a flood of sweeps.
const fullSweepEvery = 100 * time.Millisecond

func newDatabase(now func() time.Time, sweepEvery time.Duration) *database {
	db := &database{
		now:      now,
		tokens:   make(map[string]tokenEntry),
		used:     make(map[string]int64),
		sessions: make(map[[32]byte]sessionEntry),
		marks:    make(map[string]map[string]markEntry),
		max:      defaultMaxEntries,
		every:    sweepEvery,
		retime:   make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go db.sweepLoop()
	return db
}

// configure puts a config's settings in force; a zero value keeps the
// current one.
func (db *database) configure(sweepEvery time.Duration, maxEntries int) {
	db.mu.Lock()
	changed := sweepEvery > 0 && sweepEvery != db.every
	if sweepEvery > 0 {
		db.every = sweepEvery
	}
	if maxEntries > 0 {
		db.max = maxEntries
	}
	db.mu.Unlock()
	if changed {
		select {
		case db.retime <- struct{}{}:
		default:
		}
	}
}

// Destruct stops the sweeper; it implements caddy.Destructor.
func (db *database) Destruct() error {
	close(db.stop)
	<-db.done
	return nil
}

func (db *database) sweepInterval() time.Duration {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.every
}

func (db *database) sweepLoop() {
	defer close(db.done)
	tick := time.NewTicker(db.sweepInterval())
	defer tick.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-db.retime:
			tick.Reset(db.sweepInterval())
		case <-tick.C:
			db.mu.Lock()
			db.sweepLocked(db.now().UnixNano())
			db.mu.Unlock()
		}
	}
}

func (db *database) sweep() {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.sweepLocked(db.now().UnixNano())
}

func (db *database) sweepLocked(now int64) {
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
	for u, ms := range db.marks {
		for c, m := range ms {
			if m.expires <= now {
				delete(ms, c)
			}
		}
		if len(ms) == 0 {
			delete(db.marks, u)
		}
	}
}

// roomLocked tells whether one more entry fits, sweeping expired entries
// first when the store looks full (at most every fullSweepEvery).
func (db *database) roomLocked(now int64) bool {
	if len(db.tokens)+len(db.used)+len(db.sessions) < db.max {
		return true
	}
	if now-db.lastSweep >= int64(fullSweepEvery) {
		db.lastSweep = now
		db.sweepLocked(now)
	}
	return len(db.tokens)+len(db.used)+len(db.sessions) < db.max
}

// len counts the entries max_entries bounds.
func (db *database) len() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	return len(db.tokens) + len(db.used) + len(db.sessions)
}

func (db *database) addToken(key string, t store.Token, ttl time.Duration) error {
	now := db.now().UnixNano()
	db.mu.Lock()
	defer db.mu.Unlock()
	if e, ok := db.tokens[key]; ok && e.expires > now {
		return store.ErrExists
	}
	if !db.roomLocked(now) {
		return store.ErrFull
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

func (db *database) useOnce(id string, ttl time.Duration) (bool, error) {
	now := db.now().UnixNano()
	db.mu.Lock()
	defer db.mu.Unlock()
	if exp, ok := db.used[id]; ok && exp > now {
		return false, nil
	}
	if !db.roomLocked(now) {
		return false, store.ErrFull
	}
	db.used[id] = now + int64(ttl)
	return true, nil
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
		createdBy: internString(s.CreatedBy),
		created:   s.CreatedAt.UnixNano(),
		expires:   s.ExpiresAt.UnixNano(),
		idleUntil: now + int64(idle),
	}
	e.tag, _ = handleTag(store.SessionHandle(key))
	db.mu.Lock()
	defer db.mu.Unlock()
	if _, replaces := db.sessions[k]; !replaces && !db.roomLocked(now) {
		return store.ErrFull
	}
	db.sessions[k] = e
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
	if ok && !e.live(now) {
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
	return e.session(), nil
}

func (e sessionEntry) live(now int64) bool { return e.idleUntil > now && e.expires > now }

func (e sessionEntry) session() store.Session {
	return store.Session{
		UserID:    e.userID,
		Claims:    expandClaims(e.claims),
		CreatedAt: time.Unix(0, e.created).UTC(),
		ExpiresAt: time.Unix(0, e.expires).UTC(),
		CreatedBy: expandString(e.createdBy),
	}
}

func (e sessionEntry) listed(k [32]byte) store.Listed {
	return store.Listed{Key: hex.EncodeToString(k[:]), Session: e.session(), IdleUntil: time.Unix(0, e.idleUntil).UTC()}
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
			if e.live(now) {
				n++
			}
		}
	}
	db.mu.Unlock()
	db.subs.Publish(store.Invalidation{UserID: userID})
	return n
}

// sessionsOf walks every session, as revokeUser does.
func (db *database) sessionsOf(userID string) []store.Listed {
	now := db.now().UnixNano()
	var out []store.Listed
	db.mu.Lock()
	defer db.mu.Unlock()
	for k, e := range db.sessions {
		if e.userID == userID && e.live(now) {
			out = append(out, e.listed(k))
		}
	}
	return out
}

// sessionByHandle walks every session comparing tags: a rare admin call,
// bounded by max_entries (a few milliseconds for a million sessions), not
// worth an index on every session.
func (db *database) sessionByHandle(handle string) (store.Listed, error) {
	tag, ok := handleTag(handle)
	if !ok {
		return store.Listed{}, store.ErrNotFound
	}
	now := db.now().UnixNano()
	db.mu.Lock()
	defer db.mu.Unlock()
	for k, e := range db.sessions {
		if e.tag == tag && e.live(now) && store.SessionHandle(hex.EncodeToString(k[:])) == handle {
			return e.listed(k), nil
		}
	}
	return store.Listed{}, store.ErrNotFound
}

func (db *database) endSessions(userID string, keys []string) int {
	now := db.now().UnixNano()
	n := 0
	var ended []string
	db.mu.Lock()
	for _, key := range keys {
		k, err := sessionKey(key)
		if err != nil {
			continue
		}
		if e, ok := db.sessions[k]; ok && e.userID == userID {
			delete(db.sessions, k)
			ended = append(ended, key)
			if e.live(now) {
				n++
			}
		}
	}
	db.mu.Unlock()
	for _, key := range ended {
		db.subs.Publish(store.Invalidation{SessionKey: key})
	}
	return n
}

func (db *database) markRevoked(userID string, r store.Revocation, ttl time.Duration) {
	now := db.now().UnixNano()
	c := canonicalClaims(r.Claims)
	at := r.At.UnixNano()
	db.mu.Lock()
	defer db.mu.Unlock()
	ms := db.marks[userID]
	if ms == nil {
		ms = make(map[string]markEntry)
		db.marks[userID] = ms
	}
	old, ok := ms[c]
	if ok && old.expires > now {
		at = max(at, old.at)
	}
	ms[c] = markEntry{claims: maps.Clone(r.Claims), at: at, expires: max(now+int64(ttl), old.expires)}
}

func (db *database) revocations(userID string) []store.Revocation {
	now := db.now().UnixNano()
	db.mu.Lock()
	defer db.mu.Unlock()
	var out []store.Revocation
	for _, m := range db.marks[userID] {
		if m.expires > now {
			out = append(out, store.Revocation{Claims: m.claims, At: time.Unix(0, m.at).UTC()})
		}
	}
	return out
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
	return unique.Make(canonicalClaims(c))
}

// canonicalClaims is the encoding internClaims interns; "" for no claims.
func canonicalClaims(c map[string]string) string {
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
	return b.String()
}

// internString interns a short, often repeated string (a session's creator).
func internString(s string) unique.Handle[string] {
	if s == "" {
		return unique.Handle[string]{}
	}
	return unique.Make(s)
}

func expandString(h unique.Handle[string]) string {
	if h == (unique.Handle[string]{}) {
		return ""
	}
	return h.Value()
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
	_ caddy.Validator    = (*Memory)(nil)
	_ caddy.CleanerUpper = (*Memory)(nil)
	_ caddy.Destructor   = (*database)(nil)
)

// Package store is the contract between the ssogate handler and the places that
// hold sign-in tokens and sessions. Implementations are Caddy guest modules in the
// "ssogate.stores" namespace (see the memory and redis subpackages); the handler
// only ever sees this interface, so the data flows one way: HTTP → route → store.
//
// Every key passed to a Store is already the lowercase hex SHA-256 of the secret
// it stands for (see package internal/token): a store never holds a usable token
// or session id.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"
)

var (
	// ErrNotFound means no such token or session, or it expired: an ordinary
	// answer, not a fault.
	ErrNotFound = errors.New("not found")
	// ErrExists means a token with that key is already stored.
	ErrExists = errors.New("already exists")
	// ErrUnavailable is wrapped by every error that means the store could not
	// answer (network, timeout, server error). The handler fails closed on it.
	ErrUnavailable = errors.New("store unavailable")
	// ErrFull means the store holds as many entries as it may (the memory
	// store's max_entries): nothing new is added until entries expire.
	ErrFull = errors.New("store full")
)

// Token is what a sign-in token stands for until it is redeemed. Its JSON form is
// part of the contract: backends mint directly with
// `SET <prefix>tok:<sha256hex(token)> <json> EX 30 NX`.
type Token struct {
	// UserID is the only required field.
	UserID string `json:"userId"`
	// Claims are stamped on the session and sent to the upstream.
	Claims map[string]string `json:"claims,omitempty"`
	// Redirect is where the browser goes after redemption when the link
	// names no target of its own.
	Redirect string `json:"redirect,omitempty"`
	// CreatedBy is the id of the credential that minted the token.
	CreatedBy string `json:"createdBy,omitempty"`
	// IssuedAt is an RFC 3339 UTC timestamp. It is kept as written, because a
	// direct minter's format must not make its token unusable.
	IssuedAt string `json:"iat,omitempty"`
}

// Session is a signed-in browser. Its idle expiry is the store's own TTL on the
// record; ExpiresAt is the absolute limit, checked by the handler.
type Session struct {
	UserID    string            `json:"userId"`
	Claims    map[string]string `json:"claims,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
	ExpiresAt time.Time         `json:"expiresAt"`
	// CreatedBy is what minted the token the session came from: a
	// credential id, "signed:<kid>", or empty for a direct token that named
	// no creator. A session whose creator is no longer configured is refused.
	CreatedBy string `json:"createdBy,omitempty"`
}

// Listed is a live session as a listing returns it.
type Listed struct {
	// Key is the session's store key (the SHA-256 of its id).
	Key string
	Session
	// IdleUntil is when the session ends unless it is used again (the
	// store's idle expiry); the absolute limit is Session.ExpiresAt.
	IdleUntil time.Time
}

// Revocation is a user's "revoked before" mark: a token of that user issued
// at or before At, and carrying every one of Claims, is refused at redeem.
// Claims are the fixed claims of the credential that revoked (its tenant);
// empty claims reach every token of the user.
type Revocation struct {
	Claims map[string]string
	At     time.Time
}

// Invalidation tells a session cache what to forget. Exactly one field is set.
type Invalidation struct {
	// SessionKey names one ended session (logout).
	SessionKey string
	// UserID names a user whose sessions were all revoked.
	UserID string
	// All means events may have been missed (a lost subscription): forget
	// everything.
	All bool
}

// Store holds tokens and sessions. Implementations must be safe for concurrent
// use, and every operation that consumes something must be atomic across all
// gateway instances sharing the store.
type Store interface {
	// AddToken stores t under key for ttl, or returns ErrExists.
	AddToken(ctx context.Context, key string, t Token, ttl time.Duration) error
	// TakeToken returns the token under key and removes it in one atomic
	// step: of any number of concurrent calls, exactly one gets it, the others
	// get ErrNotFound.
	TakeToken(ctx context.Context, key string) (Token, error)
	// UseOnce marks id as used for ttl. It reports false if id was already
	// used, which is how signed tokens are kept single-use.
	UseOnce(ctx context.Context, id string, ttl time.Duration) (bool, error)

	// AddSession stores s under key, to expire after idle unless touched.
	AddSession(ctx context.Context, key string, s Session, idle time.Duration) error
	// Session returns the session under key and, if idle > 0, pushes its idle
	// expiry to idle from now, in the same step.
	Session(ctx context.Context, key string, idle time.Duration) (Session, error)
	// DeleteSession ends one session on every instance (logout).
	DeleteSession(ctx context.Context, key string) error
	// RevokeUser ends every session of userID on every instance and returns
	// how many there were.
	RevokeUser(ctx context.Context, userID string) (int, error)

	// Ping checks that the store answers, with a real round trip where
	// there is one (the health endpoint asks it). A failure wraps
	// ErrUnavailable.
	Ping(ctx context.Context) error

	// Sessions lists the live sessions of userID.
	Sessions(ctx context.Context, userID string) ([]Listed, error)
	// SessionByHandle finds the live session whose public handle
	// (SessionHandle of its key) is handle, or returns ErrNotFound.
	SessionByHandle(ctx context.Context, handle string) (Listed, error)
	// EndSessions ends the sessions under keys, all of userID as Sessions or
	// SessionByHandle listed them, on every instance, and returns how many
	// of them it ended: sessions that were gone already are not counted.
	EndSessions(ctx context.Context, userID string, keys []string) (int, error)

	// MarkRevoked records r for userID for at least ttl, keeping the later
	// time if the same claims were marked before. It never fails with
	// ErrFull: a revocation must always be recordable.
	MarkRevoked(ctx context.Context, userID string, r Revocation, ttl time.Duration) error
	// Revocations returns the live marks of userID (none is not an error).
	Revocations(ctx context.Context, userID string) ([]Revocation, error)

	// Subscribe calls fn for every invalidation seen by this store, made by
	// this or any other instance, until cancel is called. fn must not block.
	Subscribe(fn func(Invalidation)) (cancel func())
	// EventsCurrent reports whether, at now (unix nanoseconds), this store
	// has proven recently (within CurrentWithin) that every invalidation
	// made by any instance has reached its subscribers. A cache must not
	// serve anything while it reports false. It is called on every
	// signed-in request, so it must cost no more than an atomic load.
	EventsCurrent(now int64) bool
}

// CurrentWithin is how old a store's last proof of receiving every
// invalidation may be for EventsCurrent to hold.
const CurrentWithin = 300 * time.Millisecond

// SessionHandle is the public handle of the session under key: the first 22
// characters (132 bits) of base64url(SHA-256("ssogate-handle:" + key)). It
// names a session in listings and assertions without revealing the cookie
// value or its store key.
func SessionHandle(key string) string {
	sum := sha256.Sum256([]byte("ssogate-handle:" + key))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:22]
}

// Unavailable wraps err so that errors.Is(err, ErrUnavailable) holds, keeping
// the cause for logs.
func Unavailable(op string, err error) error {
	return &unavailableError{op: op, err: err}
}

type unavailableError struct {
	op  string
	err error
}

func (e *unavailableError) Error() string {
	return e.op + ": " + ErrUnavailable.Error() + ": " + e.err.Error()
}

func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

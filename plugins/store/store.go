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

	// Subscribe calls fn for every invalidation seen by this store, made by
	// this or any other instance, until cancel is called. fn must not block.
	Subscribe(fn func(Invalidation)) (cancel func())
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

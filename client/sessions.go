package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/ssogate/ssogate/internal/token"
)

// Session is one live session of a user, as GET /sso/sessions lists it.
type Session struct {
	// ID is the session's public handle: never its cookie value. Pass it
	// to EndSession.
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"createdAt"`
	LastSeenAt time.Time `json:"lastSeenAt"`
	// ExpiresAt is when the session ends unless it is used again.
	ExpiresAt time.Time `json:"expiresAt"`
	// CreatedBy is the credential id (or "signed:<kid>") that minted it.
	CreatedBy string `json:"createdBy"`
}

// Sessions lists the live sessions of userID that this credential reaches
// (users it may mint for, sessions carrying all of its fixed claims). The
// credential needs the revoke permission.
func (c *Client) Sessions(ctx context.Context, userID string) ([]Session, error) {
	if userID == "" {
		return nil, errors.New("ssogate: empty user id")
	}
	var resp struct {
		Sessions *[]Session `json:"sessions"`
	}
	if err := c.do(ctx, http.MethodGet, "sessions", url.Values{"userId": {userID}}, nil, &resp); err != nil {
		return nil, err
	}
	if resp.Sessions == nil {
		return nil, errors.New(`ssogate: sessions response has no "sessions" field`)
	}
	return *resp.Sessions, nil
}

// EndSession ends one session, named by the ID Sessions gave, on every
// gateway instance. An unknown session, or one out of the credential's
// scope, is an *APIError with status 404.
func (c *Client) EndSession(ctx context.Context, id string) error {
	if !validHandle(id) {
		return errors.New("ssogate: not a session id (22 characters of A-Z a-z 0-9 - _)")
	}
	var resp struct {
		Revoked *int `json:"revoked"`
	}
	if err := c.do(ctx, http.MethodDelete, "sessions/"+id, nil, nil, &resp); err != nil {
		return err
	}
	if resp.Revoked == nil {
		return errors.New(`ssogate: end session response has no "revoked" field`)
	}
	return nil
}

// validHandle keeps anything but a handle out of the request path.
func validHandle(s string) bool {
	return len(s) == 22 && token.URLSafe(s)
}

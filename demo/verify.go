package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// assertionVerifier is the portal's check of the gateway's signed identity
// (identity_assertion). The README shows the code between the README markers
// as it is, so that what it tells portals to do is what this demo runs.
type assertionVerifier struct {
	client atomic.Pointer[http.Client] // set once Caddy's CA exists
	keys   *keySet
	issuer string
}

func newAssertionVerifier(gateway string) *assertionVerifier {
	v := &assertionVerifier{issuer: gateway}
	v.keys = &keySet{url: gateway + "/sso/jwks.json", get: func(url string) (*http.Response, error) {
		c := v.client.Load()
		if c == nil {
			return nil, errors.New("the gateway is not up yet")
		}
		return c.Get(url)
	}}
	return v
}

// README:begin

// Identity is who the gateway says the user is.
type Identity struct {
	UserID    string            `json:"sub"`
	Claims    map[string]string `json:"claims"`
	SessionID string            `json:"sid"`
}

// VerifyAssertion checks the X-Ssogate-Assertion header: ES256 only, signed by
// the key its kid names in the gateway's JWKS, from the expected issuer (the
// gateway's public_url) for the expected audience (default: the issuer), and
// not expired.
func VerifyAssertion(header string, keys *keySet, issuer, audience string) (*Identity, error) {
	tok, err := jwt.ParseSigned(header, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, err
	}
	set, err := keys.forKeyID(tok.Headers[0].KeyID)
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var id Identity
	if err := tok.Claims(set, &std, &id); err != nil {
		return nil, err // unknown kid, or a bad signature
	}
	if std.Expiry == nil {
		return nil, errors.New("assertion without exp")
	}
	expect := jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{audience}, Time: time.Now()}
	if err := std.ValidateWithLeeway(expect, 5*time.Second); err != nil {
		return nil, err
	}
	return &id, nil
}

// keySet is the gateway's JWKS (<api_prefix>/jwks.json), fetched again after
// 5 minutes, or sooner (at most every 10 s) when an assertion names a key it
// lacks, as after a key rotation.
type keySet struct {
	url string
	get func(url string) (*http.Response, error) // e.g. http.Get

	mu      sync.Mutex
	keys    *jose.JSONWebKeySet
	fetched time.Time
}

func (s *keySet) forKeyID(kid string) (*jose.JSONWebKeySet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	age := time.Since(s.fetched)
	if s.keys == nil || age > 5*time.Minute || (len(s.keys.Key(kid)) == 0 && age > 10*time.Second) {
		resp, err := s.get(s.url)
		if err != nil {
			return nil, fmt.Errorf("fetching the JWKS: %w", err)
		}
		defer resp.Body.Close()
		var fresh jose.JSONWebKeySet
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err == nil && resp.StatusCode != http.StatusOK {
			err = errors.New(resp.Status)
		}
		if err == nil {
			err = json.Unmarshal(body, &fresh)
		}
		if err != nil {
			return nil, fmt.Errorf("fetching the JWKS: %w", err)
		}
		s.keys, s.fetched = &fresh, time.Now()
	}
	return s.keys, nil
}

// README:end

// verify checks r's assertion, with the gateway's issuer as the audience (the
// demo configures none).
func (v *assertionVerifier) verify(r *http.Request) (*Identity, error) {
	h := r.Header.Get("X-Ssogate-Assertion")
	if h == "" {
		return nil, errors.New("no X-Ssogate-Assertion header")
	}
	return VerifyAssertion(h, v.keys, v.issuer, v.issuer)
}

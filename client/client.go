// Package client is the Go client for the ssogate API, used by an embedding
// application's backend to mint sign-in links for its users, check whether a
// user has a session, and end a user's sessions.
//
//	c := &client.Client{
//		BaseURL: "https://portal.example.com",
//		APIKey:  os.Getenv("SSOGATE_API_KEY"),
//	}
//	tok, err := c.Mint(ctx, client.MintRequest{UserID: "user-42", Redirect: "/patients/7"})
//	if err != nil {
//		var apiErr *client.APIError
//		if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusForbidden {
//			// The credential may not mint for this user.
//		}
//		return err
//	}
//	// tok.URL works once, for at most 30 seconds: put it in the iframe now.
//	fmt.Fprintf(w, `<iframe src="%s"></iframe>`, html.EscapeString(tok.URL))
//
// A Client is safe for concurrent use as long as its fields are not changed.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Client calls one ssogate gateway with one API credential.
type Client struct {
	// BaseURL is the gateway's public address, with a path prefix if the
	// gateway is mounted under one, e.g. "https://portal.example.com".
	BaseURL string
	// APIKey is the credential's secret key, sent as a bearer token. It is
	// never put into errors.
	APIKey string
	// HTTPClient sends the requests; its transport and timeout apply. Nil
	// means http.DefaultClient. Redirects are never followed whatever its
	// CheckRedirect says: a 3xx is returned as an *APIError, because the
	// bearer key must go only where BaseURL says.
	HTTPClient *http.Client
}

// MintRequest asks for a sign-in token. Every field is optional, within what
// the credential's scope allows.
type MintRequest struct {
	// UserID is the user to sign in. Required for a credential scoped to a
	// users pattern; a credential with a fixed user may omit it.
	UserID string `json:"userId,omitempty"`
	// Redirect is where the user lands after sign-in, a path on the portal or
	// an https URL on an allowed host.
	Redirect string `json:"redirect,omitempty"`
	// Claims are passed to the portal; only keys the credential lists in
	// request_claims may be set.
	Claims map[string]string `json:"claims,omitempty"`
}

// Token is a minted sign-in token.
type Token struct {
	// ID identifies the token in the gateway's audit log; it is not the token.
	ID string `json:"id"`
	// SSOToken is the single-use token itself, for building a redeem URL of
	// another style than URL.
	SSOToken string `json:"ssoToken"`
	// UserID is the user the token signs in.
	UserID string `json:"userId"`
	// CreatedByApplicationID is the id of the credential that minted it.
	CreatedByApplicationID string `json:"createdByApplicationId"`
	// CreationTimestamp is when the gateway minted it.
	CreationTimestamp time.Time `json:"creationTimestamp"`
	// ExpiresAt is when it stops being redeemable.
	ExpiresAt time.Time `json:"expiresAt"`
	// URL is the ready-to-use sign-in link.
	URL string `json:"url"`
}

// APIError is returned for any response whose status is not 2xx.
type APIError struct {
	// StatusCode is the HTTP status, e.g. 403.
	StatusCode int
	// Code is the gateway's machine-readable error code, e.g.
	// "forbidden_scope"; empty when the response did not come from the
	// gateway's API (a proxy's error page, for instance).
	Code string
	// Message is the gateway's human-readable explanation, or the start of a
	// plain-text body, or the status text.
	Message string
}

// Error formats as "ssogate: 403 forbidden_scope: <message>".
func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("ssogate: %d: %s", e.StatusCode, e.Message)
	}
	return fmt.Sprintf("ssogate: %d %s: %s", e.StatusCode, e.Code, e.Message)
}

const (
	// maxBody bounds what is read of a response: the API's answers are a few
	// hundred bytes, and a misconfigured BaseURL may point at anything.
	maxBody = 1 << 20
	// maxMessage bounds a non-JSON error body quoted in an APIError.
	maxMessage = 200
	userAgent  = "ssogate-go-client"
)

// Mint creates a single-use sign-in token. The gateway answers 201; any
// non-2xx status is an *APIError.
func (c *Client) Mint(ctx context.Context, r MintRequest) (*Token, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("ssogate: encoding request: %w", err)
	}
	var t Token
	if err := c.do(ctx, http.MethodPost, "tokens", nil, body, &t); err != nil {
		return nil, err
	}
	if t.SSOToken == "" || t.URL == "" {
		return nil, errors.New("ssogate: mint response has no token")
	}
	return &t, nil
}

// Access reports whether this credential may mint a sign-in token for userID
// (its scope covers the user and it has the mint permission), so an app can
// decide whether to show the portal button at all.
func (c *Client) Access(ctx context.Context, userID string) (bool, error) {
	if userID == "" {
		return false, errors.New("ssogate: empty user id")
	}
	var resp struct {
		Access *bool `json:"access"`
	}
	if err := c.do(ctx, http.MethodGet, "access", url.Values{"userId": {userID}}, nil, &resp); err != nil {
		return false, err
	}
	// A missing field must not read as "no access" or, worse, be guessed.
	if resp.Access == nil {
		return false, errors.New(`ssogate: access response has no "access" field`)
	}
	return *resp.Access, nil
}

// RevokeUser ends every session of userID on every gateway instance and
// returns how many there were. The credential needs the revoke permission.
func (c *Client) RevokeUser(ctx context.Context, userID string) (int, error) {
	if userID == "" {
		// The server would answer 400; refusing here also guarantees an
		// empty variable can never be sent as a revocation.
		return 0, errors.New("ssogate: empty user id")
	}
	var resp struct {
		Revoked *int `json:"revoked"`
	}
	if err := c.do(ctx, http.MethodDelete, "sessions", url.Values{"userId": {userID}}, nil, &resp); err != nil {
		return 0, err
	}
	if resp.Revoked == nil {
		return 0, errors.New(`ssogate: revoke response has no "revoked" field`)
	}
	return *resp.Revoked, nil
}

// endpoint joins BaseURL, the API's /sso/ path and query. It keeps a path
// prefix and tolerates a trailing slash, as operators write both.
func (c *Client) endpoint(name string, query url.Values) (string, error) {
	u, err := url.Parse(c.BaseURL)
	// The parse error is not wrapped: it would repeat BaseURL, which may
	// carry userinfo.
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", errors.New("ssogate: BaseURL must be an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("ssogate: BaseURL must not have a query or fragment")
	}
	u = u.JoinPath("sso", name)
	u.RawQuery = query.Encode()
	return u.String(), nil
}

// do sends one API request and decodes a 2xx JSON answer into out.
//
// Redirects are not followed: a POST turned into a GET by a 301 from http to
// https would fail confusingly, and the bearer key should go only where
// BaseURL says. A 3xx therefore comes back as an *APIError.
func (c *Client) do(ctx context.Context, method, name string, query url.Values, body []byte, out any) error {
	if c.APIKey == "" {
		return errors.New("ssogate: APIKey is empty")
	}
	endpoint, err := c.endpoint(name, query)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, rd)
	if err != nil {
		return fmt.Errorf("ssogate: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	// Without it the gateway answers errors with an HTML page for browsers.
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	hc := http.DefaultClient
	if c.HTTPClient != nil {
		hc = c.HTTPClient
	}
	noRedirect := *hc
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	resp, err := noRedirect.Do(req)
	if err != nil {
		// *url.Error: names method and URL, never headers, and unwraps to
		// context.Canceled or DeadlineExceeded.
		return fmt.Errorf("ssogate: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("ssogate: reading %d response: %w", resp.StatusCode, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.apiError(resp, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("ssogate: decoding %d response: %w", resp.StatusCode, err)
	}
	return nil
}

// apiError builds the error for a non-2xx response, from the gateway's JSON
// when there is some and from whatever else came back otherwise.
func (c *Client) apiError(resp *http.Response, data []byte) *APIError {
	e := &APIError{StatusCode: resp.StatusCode}
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case json.Unmarshal(data, &body) == nil && (body.Error != "" || body.Code != ""):
		e.Code, e.Message = c.clean(body.Code), c.clean(body.Error)
	case mt == "text/plain":
		e.Message = c.clean(string(data))
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	if e.Message == "" {
		e.Message = "status " + strconv.Itoa(resp.StatusCode)
	}
	return e
}

// clean makes server text safe to put in an error that ends up in logs: one
// line, printable, bounded, and without the API key, which a misbehaving
// proxy could echo back. The key goes first, before truncation could leave a
// piece of it.
func (c *Client) clean(s string) string {
	if c.APIKey != "" {
		s = strings.ReplaceAll(s, c.APIKey, "[redacted]")
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ssogate/ssogate/integration/harness"
)

// assertionKey makes a signing key with the real `caddy ssogate
// assertion-key`, and checks it is written readable by its owner only.
func assertionKey(t *testing.T, kid string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), kid+".pem")
	out, err := exec.Command(harness.CaddyBinary(t), "ssogate", "assertion-key", "--out", path, "--kid", kid).CombinedOutput()
	if err != nil {
		t.Fatalf("caddy ssogate assertion-key: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "key "+kid+" ") {
		t.Errorf("assertion-key printed no config line for %s:\n%s", kid, out)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: mode %v, %v; want 0600", path, fi.Mode().Perm(), err)
	}
	return path
}

// assertionBlock is the identity_assertion block with keys, kid then file.
func assertionBlock(keys ...string) string {
	var b strings.Builder
	b.WriteString("identity_assertion {\n")
	for i := 0; i < len(keys); i += 2 {
		fmt.Fprintf(&b, "\t\t\tkey %s %s\n", keys[i], keys[i+1])
	}
	b.WriteString("\t\t\taudience portal-app\n\t\t}\n\t\tskip /health")
	return b.String()
}

// jwksOf fetches the gateway's key set over HTTPS, as a portal does.
func jwksOf(t *testing.T, g *gateway) jose.JSONWebKeySet {
	t.Helper()
	r := g.read(t, http.MethodGet, "/sso/jwks.json", nil, "")
	if r.status != http.StatusOK || !strings.Contains(r.header.Get("Cache-Control"), "max-age=") {
		t.Fatalf("GET %s/sso/jwks.json: %d, Cache-Control %q: %s", g.base, r.status, r.header.Get("Cache-Control"), r.body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(r.body), &set); err != nil {
		t.Fatalf("jwks.json %s: %v", r.body, err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("jwks.json holds a private key: %s", r.body)
		}
	}
	return set
}

// kids are the key ids of a key set, in order.
func kids(set jose.JSONWebKeySet) string {
	var ids []string
	for _, k := range set.Keys {
		ids = append(ids, k.KeyID)
	}
	return strings.Join(ids, ",")
}

// lastAssertion is the assertion header of the upstream's latest request.
func lastAssertion(t *testing.T, up *harness.Upstream) string {
	t.Helper()
	reqs := up.Requests()
	if len(reqs) == 0 {
		t.Fatal("the upstream got no request")
	}
	return reqs[len(reqs)-1].Header.Get("X-Ssogate-Assertion")
}

// assertionIdentity is what a verified assertion says.
type assertionIdentity struct {
	jwt.Claims
	kid    string
	claims map[string]string
	sid    string
}

// verifyWithJWKS checks tok as the README tells a portal to: ES256 only, the
// key of its kid from the JWKS, iss, aud and exp.
func verifyWithJWKS(tok string, set jose.JSONWebKeySet, iss string) (assertionIdentity, error) {
	var id assertionIdentity
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return id, err
	}
	var extra struct {
		Claims map[string]string `json:"claims"`
		SID    string            `json:"sid"`
	}
	if err := parsed.Claims(set, &id.Claims, &extra); err != nil {
		return id, err
	}
	if id.Expiry == nil {
		return id, fmt.Errorf("no exp")
	}
	if err := id.ValidateWithLeeway(jwt.Expected{Issuer: iss, AnyAudience: jwt.Audience{"portal-app"}, Time: time.Now()}, 5*time.Second); err != nil {
		return id, err
	}
	id.kid, id.claims, id.sid = parsed.Headers[0].KeyID, extra.Claims, extra.SID
	return id, nil
}

// TestIdentityAssertion runs two Caddy instances on one Redis with the same
// identity_assertion key file: the upstream receives an assertion that
// verifies against the gateway's own JWKS; a client's forged header never
// arrives; either instance's assertions verify with the other's key set; a
// reload with a rotated key set keeps serving and publishes both keys.
func TestIdentityAssertion(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedis(t)
	up := harness.StartUpstream(t)
	k1, k2 := assertionKey(t, "k1"), assertionKey(t, "k2")
	pa, pb := harness.FreePort(t), harness.FreePort(t)
	site := func(p int, keys ...string) scaleSite {
		return scaleSite{port: p, store: "store redis " + rd.URL(), extra: assertionBlock(keys...)}
	}
	a := scaleStart(t, scaleCaddyfile("", up.Addr(), site(pa, "k1", k1)), harness.CaddyOptions{}, pa)[0]
	b := scaleTwin(t, a, scaleCaddyfile("admin off", up.Addr(), site(pb, "k1", k1)), pb)
	cookie := a.signIn(t, "asserted")

	t.Run("UpstreamGetsAJWTThatVerifiesAgainstTheJWKS", func(t *testing.T) {
		set := jwksOf(t, a)
		if kids(set) != "k1" {
			t.Fatalf("jwks.json publishes %q, want k1", kids(set))
		}
		before := scaleScrape(t, a.caddy.AdminPort())
		if user, status := a.whoami(t, cookie); user != "asserted" {
			t.Fatalf("signed-in request: %d as %q", status, user)
		}
		tok := lastAssertion(t, up)
		id, err := verifyWithJWKS(tok, set, a.base)
		if err != nil {
			t.Fatalf("the upstream's assertion does not verify against %s/sso/jwks.json: %v\n%s", a.base, err, tok)
		}
		if id.Subject != "asserted" || id.claims["group"] != "scale" || id.sid == "" || id.kid != "k1" {
			t.Errorf("assertion says %+v", id)
		}
		if d := id.Expiry.Time().Sub(id.IssuedAt.Time()); d > time.Minute || d <= 0 {
			t.Errorf("exp − iat = %s, want at most the default ttl of 60s", d)
		}
		if strings.Contains(tok, cookie.Value) {
			t.Error("the assertion holds the session id")
		}
		// sid is the handle the sessions API lists the session by.
		r := a.read(t, http.MethodGet, "/sso/sessions?userId=asserted", nil, "", "Authorization: Bearer "+scaleKey)
		var listed struct {
			Sessions []struct {
				ID string `json:"id"`
			} `json:"sessions"`
		}
		if err := json.Unmarshal([]byte(r.body), &listed); err != nil || len(listed.Sessions) != 1 || listed.Sessions[0].ID != id.sid {
			t.Errorf("GET /sso/sessions: %d %s; want the one session listed as sid %s", r.status, r.body, id.sid)
		}
		// Reused: more requests of the session cost no signature.
		for range 10 {
			a.whoami(t, cookie)
			if again := lastAssertion(t, up); again != tok {
				t.Fatal("the next request of the session got a new assertion")
			}
		}
		signed := `ssogate_assertions_signed_total`
		if d := scaleMetricDelta(before, scaleScrape(t, a.caddy.AdminPort()))[signed]; d != 1 {
			t.Errorf("%s moved by %v over 11 requests of one session, want 1", signed, d)
		}
	})

	t.Run("ForgedHeaderNeverArrives", func(t *testing.T) {
		const forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.forged"
		up.Reset()
		for _, name := range []string{"X-Ssogate-Assertion", "X_Ssogate_Assertion"} {
			for _, path := range []string{"/patients", "/health"} {
				if r := a.read(t, http.MethodGet, path, cookie, "", name+": "+forged); r.status != http.StatusOK {
					t.Fatalf("%s with a session: %d", path, r.status)
				}
			}
			if r := a.read(t, http.MethodGet, "/health", nil, "", name+": "+forged); r.status != http.StatusOK {
				t.Fatalf("skip path without a session: %d", r.status)
			}
			if r := a.read(t, http.MethodGet, "/patients", nil, "", name+": "+forged); r.status != http.StatusUnauthorized {
				t.Fatalf("gated path without a session: %d, want 401", r.status)
			}
		}
		reqs := up.Requests()
		if len(reqs) != 6 {
			t.Fatalf("the upstream got %d requests, want 6", len(reqs))
		}
		for _, r := range reqs {
			for k, vs := range r.Header {
				for _, v := range vs {
					if strings.Contains(v, "forged") {
						t.Errorf("%s: the client's header reached the upstream as %s", r.Path, k)
					}
				}
			}
			got := r.Header.Get("X-Ssogate-Assertion")
			if r.Path == "/patients" {
				if _, err := verifyWithJWKS(got, jwksOf(t, a), a.base); err != nil {
					t.Errorf("/patients: the gateway's own assertion is missing or bad: %v", err)
				}
			} else if got != "" && r.Header.Get("X-Forwarded-User") == "" {
				t.Errorf("skip path without a session carries an assertion")
			}
		}
	})

	t.Run("TwoInstancesSignInterchangeably", func(t *testing.T) {
		setA, setB := jwksOf(t, a), jwksOf(t, b)
		if kids(setA) != kids(setB) {
			t.Fatalf("key sets differ: %s and %s", kids(setA), kids(setB))
		}
		if user, status := b.whoami(t, cookie); user != "asserted" {
			t.Fatalf("session made on A, request to B: %d as %q", status, user)
		}
		fromB := lastAssertion(t, up)
		a.whoami(t, cookie)
		fromA := lastAssertion(t, up)
		for name, tc := range map[string]struct {
			tok, iss string
			set      jose.JSONWebKeySet
		}{
			"B's with A's key set": {fromB, b.base, setA},
			"A's with B's key set": {fromA, a.base, setB},
		} {
			id, err := verifyWithJWKS(tc.tok, tc.set, tc.iss)
			if err != nil || id.Subject != "asserted" {
				t.Errorf("%s: %v (%+v)", name, err, id)
			}
		}
		idA, _ := verifyWithJWKS(fromA, setA, a.base)
		idB, _ := verifyWithJWKS(fromB, setB, b.base)
		if idA.sid != idB.sid {
			t.Errorf("one session, two sids: %s on A, %s on B", idA.sid, idB.sid)
		}
	})

	t.Run("ReloadWithRotatedKeysKeepsServing", func(t *testing.T) {
		a.whoami(t, cookie)
		old := lastAssertion(t, up)
		for _, step := range []struct {
			keys   []string
			signer string
		}{
			{[]string{"k1", k1, "k2", k2}, "k1"}, // the new key published
			{[]string{"k2", k2, "k1", k1}, "k2"}, // then signing
		} {
			a.caddy.Reload(t, scaleCaddyfile("", up.Addr(), site(pa, step.keys...)))
			set := jwksOf(t, a)
			if kids(set) != step.keys[0]+","+step.keys[2] {
				t.Fatalf("after the reload jwks.json publishes %q, want %s,%s", kids(set), step.keys[0], step.keys[2])
			}
			if user, status := a.whoami(t, cookie); user != "asserted" {
				t.Fatalf("after the reload: %d as %q; the session no longer works", status, user)
			}
			id, err := verifyWithJWKS(lastAssertion(t, up), set, a.base)
			if err != nil || id.kid != step.signer {
				t.Errorf("after the reload the assertion (kid %q) does not verify with kid %s: %v", id.kid, step.signer, err)
			}
			if _, err := verifyWithJWKS(old, set, a.base); err != nil {
				t.Errorf("an assertion signed before the rotation no longer verifies: %v", err)
			}
		}
	})
}

// A missing or wrong key file stops the config with an error that names
// identity_assertion, the kid and the cause (caddy validate provisions the
// config as a start would).
func TestIdentityAssertionBadKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notKey := filepath.Join(dir, "not-a-key.pem")
	if err := os.WriteFile(notKey, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		filepath.Join(dir, "missing.pem"): "no such file",
		notKey:                            "not a private key",
		"{env.SSOGATE_IT_UNSET_KEY}":      "resolves to nothing",
	} {
		cf := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(cf, []byte(gatewayCaddyfile(harness.FreePort(t), "127.0.0.1:9", gatewayOptions{extra: assertionBlock("main", file)})), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(harness.CaddyBinary(t), "validate", "--adapter", "caddyfile", "--config", cf)
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), `identity_assertion: key \"main\"`) || !strings.Contains(string(out), want) {
			t.Errorf("key file %s: caddy validate: %v, want an error naming the key and saying %q:\n%s", file, err, want, tail(string(out), 1500))
		}
	}
}

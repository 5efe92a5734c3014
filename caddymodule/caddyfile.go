package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("ssogate", parseCaddyfile)
	// Ahead of every directive that can answer, proxy or rewrite a request
	// (redir, rewrite, uri, try_files, basic_auth, handle, route, respond,
	// reverse_proxy, file_server, …), so that a site is gated whole, and so
	// that redeem routes and skip paths are judged on the path the client
	// sent, before a rewrite (an SPA's try_files) could turn a sign-in link
	// into index.html.
	httpcaddyfile.RegisterDirectiveOrder("ssogate", httpcaddyfile.Before, "redir")
}

// parseCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	ssogate {
//		store memory | redis <url> | redis { … }
//		credential <id> {
//			key_sha256     <64 hex>
//			user           <user id>
//			users          <pattern>...
//			claims         <key>=<value>...
//			request_claims <key>...
//			allow          mint|revoke...
//			mint_rate_limit <tokens> <window> | off
//		}
//		signing_key              <kid> <secret>
//		token_ttl                <duration>
//		session_idle             <duration>
//		session_ttl              <duration>
//		cookie_name              <name>
//		public_url               <https://host>
//		redirect_hosts           <host>...
//		embed_from               <origin>...
//		rewrite_upstream_cookies on|off
//		skip                     <path>...
//		error_pages              builtin|caddy
//		login_url                <url>
//		user_header              <header>
//		claims_header            <header>
//		redeem                   redirect|consume_ssotoken|auth off | <path> [<token_param> [<redirect_param>]]
//		api_prefix               <path>
//		redeem_rate_limit        <failures> <window> | off
//		session_cache            <size> <ttl> | off
//		redeem_confirm           auto|always|off
//		mint_rate_limit          <tokens> <window> | off
//		identity_assertion {
//			key      <kid> <PEM file>
//			audience <aud>
//			header   <name>
//			ttl      <duration>
//		}
//	}
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var s Handler
	err := s.UnmarshalCaddyfile(h.Dispenser)
	return &s, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (s *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			mod, err := caddyfile.UnmarshalModule(d, "ssogate.stores."+name)
			if err != nil {
				return err
			}
			s.StoreRaw = caddyconfig.JSONModuleObject(mod, "backend", name, nil)
		case "credential":
			c, err := parseCredential(d)
			if err != nil {
				return err
			}
			s.Credentials = append(s.Credentials, c)
		case "signing_key":
			var kid, secret string
			if !d.AllArgs(&kid, &secret) {
				return d.ArgErr()
			}
			if s.SigningKeys == nil {
				s.SigningKeys = map[string]string{}
			}
			if _, dup := s.SigningKeys[kid]; dup {
				return d.Errf("signing_key %q given twice", kid)
			}
			s.SigningKeys[kid] = secret
		case "token_ttl", "session_idle", "session_ttl":
			name := d.Val()
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			switch name {
			case "token_ttl":
				s.TokenTTL = caddy.Duration(dur)
			case "session_idle":
				s.SessionIdle = caddy.Duration(dur)
			default:
				s.SessionTTL = caddy.Duration(dur)
			}
		case "cookie_name":
			if !d.AllArgs(&s.CookieName) {
				return d.ArgErr()
			}
		case "public_url":
			if !d.AllArgs(&s.PublicURL) {
				return d.ArgErr()
			}
		case "redirect_hosts":
			if err := appendArgs(d, &s.RedirectHosts); err != nil {
				return err
			}
		case "embed_from":
			if err := appendArgs(d, &s.EmbedFrom); err != nil {
				return err
			}
		case "rewrite_upstream_cookies":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			on, err := onOff(d, v)
			if err != nil {
				return err
			}
			s.RewriteUpstreamCookies = &on
		case "skip":
			if err := appendArgs(d, &s.Skip); err != nil {
				return err
			}
		case "login_url":
			if !d.AllArgs(&s.LoginURL) {
				return d.ArgErr()
			}
		case "user_header":
			if !d.AllArgs(&s.UserHeader) {
				return d.ArgErr()
			}
		case "claims_header":
			if !d.AllArgs(&s.ClaimsHeader) {
				return d.ArgErr()
			}
		case "redeem":
			args := d.RemainingArgs()
			if len(args) < 2 || len(args) > 4 {
				return d.ArgErr()
			}
			if _, ok := defaultRedeemRoutes[args[0]]; !ok {
				return d.Errf("redeem: unknown route %q (want redirect, consume_ssotoken, auth)", args[0])
			}
			if s.Redeem == nil {
				s.Redeem = map[string]*RedeemRoute{}
			}
			rt := &RedeemRoute{}
			if args[1] == "off" {
				if len(args) > 2 {
					return d.ArgErr()
				}
				rt.Disabled = true
			} else {
				rt.Path = args[1]
				if len(args) > 2 {
					if args[0] == "redirect" {
						return d.Errf("redeem redirect takes the token from the path: no parameters")
					}
					rt.TokenParam = args[2]
				}
				if len(args) > 3 {
					rt.RedirectParam = args[3]
				}
			}
			s.Redeem[args[0]] = rt
		case "api_prefix":
			if !d.AllArgs(&s.APIPrefix) {
				return d.ArgErr()
			}
		default:
			if err := s.unmarshalExtra(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// unmarshalExtra parses the subdirectives of features kept in their own files.
func (s *Handler) unmarshalExtra(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "redeem_rate_limit":
		return s.unmarshalRateLimit(d)
	case "session_cache":
		return s.unmarshalSessionCache(d)
	case "error_pages":
		return s.unmarshalErrorPages(d)
	case "redeem_confirm":
		return s.unmarshalConfirm(d)
	case "mint_rate_limit":
		return s.unmarshalMintRateLimit(d)
	case "identity_assertion":
		return s.unmarshalIdentityAssertion(d)
	}
	return d.Errf("unrecognized subdirective %q", d.Val())
}

func parseCredential(d *caddyfile.Dispenser) (*Credential, error) {
	c := &Credential{}
	if !d.AllArgs(&c.ID) {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "key_sha256":
			if !d.AllArgs(&c.KeySHA256) {
				return nil, d.ArgErr()
			}
		case "user":
			if !d.AllArgs(&c.User) {
				return nil, d.ArgErr()
			}
		case "users":
			if err := appendArgs(d, &c.Users); err != nil {
				return nil, err
			}
		case "claims":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			if c.Claims == nil {
				c.Claims = map[string]string{}
			}
			for _, kv := range args {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return nil, d.Errf("claims: %q is not key=value", kv)
				}
				c.Claims[k] = v
			}
		case "request_claims":
			if err := appendArgs(d, &c.RequestClaims); err != nil {
				return nil, err
			}
		case "allow":
			if err := appendArgs(d, &c.Allow); err != nil {
				return nil, err
			}
		case "mint_rate_limit":
			l, err := parseMintRateLimit(d)
			if err != nil {
				return nil, err
			}
			c.MintRateLimit = l
		default:
			return nil, d.Errf("unrecognized credential option %q", d.Val())
		}
	}
	return c, nil
}

func appendArgs(d *caddyfile.Dispenser, to *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*to = append(*to, args...)
	return nil
}

func onOff(d *caddyfile.Dispenser, v string) (bool, error) {
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("%s: want on or off, got %q", d.Val(), v)
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)

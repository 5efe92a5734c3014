package redis

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	redis [<url>] {
//		url               <url>
//		addrs             <host:port>...
//		master_name       <name>
//		cluster
//		username          <user>
//		password          <password>
//		sentinel_password <password>
//		db                <n>
//		tls
//		key_prefix        <prefix>
//		dial_timeout      <duration>
//		read_timeout      <duration>
//		write_timeout     <duration>
//		consume_replicas  <n> [<timeout>]
//	}
//
// consume_replicas 0 turns off the replicas' confirmation of a consumed
// token; the timeout defaults to 250ms.
func (r *Redis) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the store's name
	if d.NextArg() {
		r.URL = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "url":
			if !d.AllArgs(&r.URL) {
				return d.ArgErr()
			}
		case "addrs":
			r.Addrs = append(r.Addrs, d.RemainingArgs()...)
			if len(r.Addrs) == 0 {
				return d.ArgErr()
			}
		case "master_name":
			if !d.AllArgs(&r.MasterName) {
				return d.ArgErr()
			}
		case "cluster":
			if d.NextArg() {
				return d.ArgErr()
			}
			r.Cluster = true
		case "username":
			if !d.AllArgs(&r.Username) {
				return d.ArgErr()
			}
		case "password":
			if !d.AllArgs(&r.Password) {
				return d.ArgErr()
			}
		case "sentinel_password":
			if !d.AllArgs(&r.SentinelPassword) {
				return d.ArgErr()
			}
		case "db":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return d.Errf("db: %q is not a database number", s)
			}
			r.DB = n
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			r.TLS = true
		case "key_prefix":
			if !d.AllArgs(&r.KeyPrefix) {
				return d.ArgErr()
			}
		case "dial_timeout", "read_timeout", "write_timeout":
			name := d.Val()
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			switch name {
			case "dial_timeout":
				r.DialTimeout = caddy.Duration(dur)
			case "read_timeout":
				r.ReadTimeout = caddy.Duration(dur)
			default:
				r.WriteTimeout = caddy.Duration(dur)
			}
		case "consume_replicas":
			if err := r.parseConsumeReplicas(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized redis store option %q", d.Val())
		}
	}
	return nil
}

// parseConsumeReplicas reads consume_replicas <n> [<timeout>].
func (r *Redis) parseConsumeReplicas(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 {
		return d.Errf("consume_replicas: %q is not a number of replicas", args[0])
	}
	r.ConsumeReplicas = &n
	if len(args) == 2 {
		dur, err := caddy.ParseDuration(args[1])
		if err != nil || dur <= 0 {
			return d.Errf("consume_replicas: timeout %q: want a duration such as 100ms", args[1])
		}
		r.ConsumeTimeout = caddy.Duration(dur)
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Redis)(nil)

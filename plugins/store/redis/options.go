package redis

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// options turns the config into go-redis options: the URL first, then every
// field that is set.
func (r *Redis) options() (*goredis.UniversalOptions, error) {
	o := &goredis.UniversalOptions{}
	if r.URL != "" {
		var err error
		if o, err = parseURL(r.URL); err != nil {
			return nil, fmt.Errorf("redis store: url: %w", err)
		}
	}
	if len(r.Addrs) > 0 {
		o.Addrs = r.Addrs
	}
	if len(o.Addrs) == 0 {
		return nil, fmt.Errorf("redis store: no url or addrs")
	}
	if r.MasterName != "" {
		o.MasterName = r.MasterName
	}
	if r.Cluster {
		o.IsClusterMode = true
	}
	if r.Username != "" {
		o.Username = r.Username
	}
	if r.Password != "" {
		o.Password = r.Password
	}
	if r.SentinelPassword != "" {
		o.SentinelPassword = r.SentinelPassword
	}
	if r.DB != 0 {
		o.DB = r.DB
	}
	if r.TLS && o.TLSConfig == nil {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	o.DialTimeout = orDefault(r.DialTimeout, time.Second)
	o.ReadTimeout = orDefault(r.ReadTimeout, 500*time.Millisecond)
	o.WriteTimeout = orDefault(r.WriteTimeout, 500*time.Millisecond)
	// Without this, go-redis ignores the request's context deadline.
	o.ContextTimeoutEnabled = true
	// Waiting for a free connection counts against the same budget: a
	// saturated pool must not hold requests longer than a dead server would.
	o.PoolTimeout = o.DialTimeout + o.ReadTimeout
	// Retries would multiply the time a request waits during an outage.
	// go-redis dials up to 5 times by default, 100ms apart and each with the
	// full dial timeout: against a dead server that is 0.4s per command
	// (5.4s if the host does not answer at all). One dial per attempt, and
	// one more attempt, bound a command to about two dial timeouts.
	o.MaxRetries = 1
	o.DialerRetries = 1
	o.DisableIdentity = true
	return o, nil
}

func orDefault[T ~int64](d T, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

// parseURL reads redis://, rediss:// and redis-sentinel:// URLs.
func parseURL(raw string) (*goredis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "redis", "rediss":
		opt, err := goredis.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return &goredis.UniversalOptions{
			Addrs:     []string{opt.Addr},
			Username:  opt.Username,
			Password:  opt.Password,
			DB:        opt.DB,
			TLSConfig: opt.TLSConfig,
		}, nil
	case "redis-sentinel":
		o := &goredis.UniversalOptions{}
		for _, h := range strings.Split(u.Host, ",") {
			if h == "" {
				continue
			}
			if !strings.Contains(h, ":") {
				h += ":26379"
			}
			o.Addrs = append(o.Addrs, h)
		}
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if parts[0] == "" {
			return nil, fmt.Errorf("%s: the path must name the master: redis-sentinel://host:port/<master>", u.Redacted())
		}
		o.MasterName = parts[0]
		if len(parts) > 1 {
			if o.DB, err = strconv.Atoi(parts[1]); err != nil {
				return nil, fmt.Errorf("%s: database %q is not a number", u.Redacted(), parts[1])
			}
		}
		if u.User != nil {
			o.Username = u.User.Username()
			o.Password, _ = u.User.Password()
		}
		return o, nil
	default:
		return nil, fmt.Errorf("scheme %q: want redis://, rediss:// or redis-sentinel://", u.Scheme)
	}
}

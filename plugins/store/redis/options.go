package redis

import (
	"crypto/tls"
	"fmt"
	"maps"
	"net/url"
	"slices"
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
	// A field beats the URL's query, which beats the default.
	o.DialTimeout = orDefault(r.DialTimeout, orDefault(o.DialTimeout, time.Second))
	o.ReadTimeout = orDefault(r.ReadTimeout, orDefault(o.ReadTimeout, 500*time.Millisecond))
	o.WriteTimeout = orDefault(r.WriteTimeout, orDefault(o.WriteTimeout, 500*time.Millisecond))
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

// parseURL reads redis://, rediss:// and redis-sentinel:// URLs, and the
// query options of urlOptions.
func parseURL(raw string) (*goredis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	query := u.Query()
	u.RawQuery = ""
	var o *goredis.UniversalOptions
	switch u.Scheme {
	case "redis", "rediss":
		opt, err := goredis.ParseURL(u.String())
		if err != nil {
			return nil, err
		}
		o = &goredis.UniversalOptions{
			Addrs:     []string{opt.Addr},
			Username:  opt.Username,
			Password:  opt.Password,
			DB:        opt.DB,
			TLSConfig: opt.TLSConfig,
		}
	case "redis-sentinel":
		o = &goredis.UniversalOptions{}
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
	default:
		return nil, fmt.Errorf("scheme %q: want redis://, rediss:// or redis-sentinel://", u.Scheme)
	}
	if err := applyQuery(o, query); err != nil {
		return nil, fmt.Errorf("%s: %w", u.Redacted(), err)
	}
	return o, nil
}

// urlOptions are the query options a store URL may carry: the size and
// lifetime of the connection pool, the client's name, and the timeouts
// (which the fields of the same name override). Every other option is
// refused rather than ignored, so that a setting an operator believes in is
// never silently dropped; refused reasons say why for the go-redis options
// the store controls itself.
var urlOptions = []string{
	"client_name", "conn_max_idle_time", "conn_max_lifetime", "dial_timeout", "max_active_conns",
	"max_idle_conns", "min_idle_conns", "pool_size", "read_timeout", "write_timeout",
}

// refusedOptions explain go-redis URL options the store does not take.
var refusedOptions = map[string]string{
	"max_retries":       "the store retries once, so that an outage answers 503 within about two dial timeouts",
	"min_retry_backoff": "the store retries once, so that an outage answers 503 within about two dial timeouts",
	"max_retry_backoff": "the store retries once, so that an outage answers 503 within about two dial timeouts",
	"pool_timeout":      "the wait for a free connection is dial_timeout + read_timeout",
	"db":                "give the database in the path: redis://host:port/<db>",
	"skip_verify":       "certificate verification cannot be turned off",
	"protocol":          "the store speaks RESP2",
}

// applyQuery sets o from the URL's query options.
func applyQuery(o *goredis.UniversalOptions, q url.Values) error {
	keys := slices.Sorted(maps.Keys(q))
	for _, k := range keys {
		vals := q[k]
		if why, ok := refusedOptions[k]; ok {
			return fmt.Errorf("query option %q is not supported: %s", k, why)
		}
		if !slices.Contains(urlOptions, k) {
			return fmt.Errorf("unknown query option %q (supported: %s)", k, strings.Join(urlOptions, ", "))
		}
		if len(vals) != 1 {
			return fmt.Errorf("query option %q given %d times", k, len(vals))
		}
		v := vals[0]
		var err error
		switch k {
		case "client_name":
			o.ClientName = v
		case "pool_size":
			o.PoolSize, err = count(v)
		case "min_idle_conns":
			o.MinIdleConns, err = count(v)
		case "max_idle_conns":
			o.MaxIdleConns, err = count(v)
		case "max_active_conns":
			o.MaxActiveConns, err = count(v)
		case "conn_max_idle_time":
			o.ConnMaxIdleTime, err = duration(v)
		case "conn_max_lifetime":
			o.ConnMaxLifetime, err = duration(v)
		case "dial_timeout":
			o.DialTimeout, err = duration(v)
		case "read_timeout":
			o.ReadTimeout, err = duration(v)
		case "write_timeout":
			o.WriteTimeout, err = duration(v)
		}
		if err != nil {
			return fmt.Errorf("query option %s=%q: %w", k, v, err)
		}
	}
	return nil
}

// count reads a non-negative number.
func count(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a number ≥ 0")
	}
	return n, nil
}

// duration reads a Go duration ("500ms") or, as go-redis does, a number of
// seconds.
func duration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want a duration such as 500ms")
	}
	return d, nil
}

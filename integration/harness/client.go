package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"testing"
	"time"
)

// TLSClient is the one HTTPS client constructor of the integration tests: it
// trusts only roots, dials every host:port at 127.0.0.1:port (so
// https://portal.test:8443 works without /etc/hosts), follows no redirect,
// keeps no cookies, speaks HTTP/1.1 or HTTP/2, and gives up on a request
// after 15 s. Its idle connections are closed at cleanup. Caddy.Client,
// BareClient and JarClient are it with Caddy's internal root.
func TLSClient(t testing.TB, roots *x509.CertPool) *http.Client {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
		TLSClientConfig:       &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		IdleConnTimeout:       30 * time.Second,
		MaxIdleConnsPerHost:   16,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 15 * time.Second,
	}
}

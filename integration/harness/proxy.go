package harness

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP relay on 127.0.0.1 to one target, which a test can pause to
// play a silent network partition: paused, it keeps every connection open
// and every byte in flight, but forwards nothing in either direction, so
// neither side sees an error (as when a link silently stops delivering);
// resumed, the held bytes go on in order, as TCP would deliver them once the
// network is back. New connections are accepted while paused, and stall too.
type Proxy struct {
	l      net.Listener
	target string

	mu     sync.Mutex
	paused bool
	resume chan struct{} // closed by Resume; replaced by Pause
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// StartProxy relays 127.0.0.1:<free port> to target until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: proxy: %v", err)
	}
	p := &Proxy{l: l, target: target, resume: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.resume)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// URL is a redis:// URL of database 0 through the proxy, for a target that is
// a Redis server.
func (p *Proxy) URL() string { return "redis://" + p.Addr() + "/0" }

// Pause stops forwarding, holding what is in flight.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		p.paused = true
		p.resume = make(chan struct{})
	}
}

// Resume forwards again, the held bytes first.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.paused = false
		close(p.resume)
	}
}

// gate returns a channel that is closed while the proxy forwards.
func (p *Proxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resume
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		p.wg.Add(2)
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// track remembers a connection pair, or closes it when the proxy is closing.
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst, waiting at the gate before every write.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				src.Close()
			}
			return
		}
	}
}

// close stops the proxy: the listener, every connection, and the pipes.
func (p *Proxy) close() {
	p.l.Close()
	p.Resume()
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

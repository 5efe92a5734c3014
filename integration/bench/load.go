package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator speaks HTTP/1.1 on keep-alive connections with requests
// serialized once up front and a minimal response reader, so that it takes
// as little of the machine's CPU as it can from the servers it measures (on
// two cores they share it). It is closed-loop for throughput (each connection
// sends its next request when the last answer is in, as wrk does) and
// open-loop for latency at a fixed rate (requests are sent on a schedule,
// and latency counts from the scheduled moment, so a slow answer that
// delays the ones behind it is not hidden).

// maxSamples bounds the latencies one run keeps, and so its memory.
const maxSamples = 4 << 20

// loadResult is what one run measured.
type loadResult struct {
	requests  int           // answered with the expected status
	errors    int           // wrong status, or a connection error
	elapsed   time.Duration // from the first send to the last answer
	latencies []time.Duration
	firstErr  error
}

func (r loadResult) rate() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// percentile returns the p-th percentile (0 < p ≤ 100) of the latencies.
func (r loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies))*p/100+0.5) - 1
	return r.latencies[max(0, min(i, len(r.latencies)-1))]
}

// merge adds o into r; finish must be called after the last merge.
func (r *loadResult) merge(o loadResult) {
	r.requests += o.requests
	r.errors += o.errors
	if room := maxSamples - len(r.latencies); room > 0 {
		r.latencies = append(r.latencies, o.latencies[:min(room, len(o.latencies))]...)
	}
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
}

func (r *loadResult) finish() { slices.Sort(r.latencies) }

// conn is one keep-alive HTTP/1.1 connection.
type conn struct {
	addr string
	c    net.Conn
	rd   *bufio.Reader
}

func dial(addr string) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &conn{addr: addr, c: c, rd: bufio.NewReaderSize(c, 16<<10)}, nil
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
	}
}

// do sends req (a whole serialized request) and reads the answer, returning
// its status and, if keep is set, its headers. It redials once if the server
// had closed the idle connection.
func (c *conn) do(req []byte, keep bool) (int, []byte, error) {
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write(req); err != nil {
		return 0, nil, err
	}
	status, hdr, err := c.read(keep)
	if err != nil {
		// Any error leaves the stream in an unknown state.
		c.close()
		if nc, derr := dial(c.addr); derr == nil {
			*c = *nc
		} else {
			c.c = nil
			return 0, nil, errors.Join(err, derr)
		}
	}
	return status, hdr, err
}

var (
	hdrContentLength = []byte("content-length:")
	hdrChunked       = []byte("transfer-encoding: chunked")
	hdrClose         = []byte("connection: close")
)

// read reads one response: the status line, the headers, and the body by
// Content-Length or chunked encoding, which it discards.
func (c *conn) read(keep bool) (status int, hdr []byte, err error) {
	line, err := c.rd.ReadSlice('\n')
	if err != nil {
		return 0, nil, fmt.Errorf("status line: %w", err)
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, closing := -1, false, false
	for {
		line, err = c.rd.ReadSlice('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("headers: %w", err)
		}
		if len(line) <= 2 {
			break
		}
		if keep {
			hdr = append(hdr, line...)
		}
		switch {
		case hasPrefixFold(line, hdrContentLength):
			v := bytes.TrimSpace(line[len(hdrContentLength):])
			if length, err = strconv.Atoi(string(v)); err != nil {
				return 0, nil, fmt.Errorf("bad header %q", line)
			}
		case hasPrefixFold(line, hdrChunked):
			chunked = true
		case hasPrefixFold(line, hdrClose):
			closing = true
		}
	}
	switch {
	case chunked:
		err = c.discardChunked()
	case length >= 0:
		_, err = c.rd.Discard(length)
	case status == 204 || status == 304:
	default:
		err = errors.New("response without a length")
	}
	if err == nil && closing {
		err = errors.New("server closed the connection")
	}
	return status, hdr, err
}

func (c *conn) discardChunked() error {
	for {
		line, err := c.rd.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 64)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			// Trailers, then the final empty line.
			for {
				line, err := c.rd.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(line) <= 2 {
					return nil
				}
			}
		}
		if _, err := c.rd.Discard(int(size) + 2); err != nil {
			return err
		}
	}
}

func hasPrefixFold(s, prefix []byte) bool {
	return len(s) >= len(prefix) && bytes.EqualFold(s[:len(prefix)], prefix)
}

// getRequest serializes a GET with the headers a browser on the portal sends.
func getRequest(host, path, cookie string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	b.WriteString("User-Agent: Mozilla/5.0 (X11; Linux x86_64) ssogate-bench\r\n")
	b.WriteString("Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n")
	b.WriteString("Accept-Language: en-US,en;q=0.5\r\n")
	// A browser's navigation, which is what redeems a link at once.
	b.WriteString("Sec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n")
	if cookie != "" {
		fmt.Fprintf(&b, "Cookie: %s\r\n", cookie)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// closedLoop keeps len(reqs) connections busy for d, each sending its own
// request (a browser with its own session) again as soon as the last answer
// is in, and counts answers with status want.
func closedLoop(addr string, reqs [][]byte, want int, d time.Duration) (loadResult, error) {
	conns := make([]*conn, len(reqs))
	for i := range conns {
		c, err := dial(addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.close()
			}
			return loadResult{}, err
		}
		conns[i] = c
	}
	results := make([]loadResult, len(reqs))
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i, c := range conns {
		wg.Go(func() {
			defer c.close()
			res := &results[i]
			res.latencies = make([]time.Duration, 0, 1<<14)
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				status, _, err := c.do(reqs[i], false)
				lat := time.Since(t0)
				if err != nil || status != want {
					res.errors++
					if res.firstErr == nil {
						res.firstErr = fmt.Errorf("status %d, error %v", status, err)
					}
					if c.c == nil {
						return
					}
					continue
				}
				res.requests++
				if len(res.latencies) < maxSamples/len(reqs) {
					res.latencies = append(res.latencies, lat)
				}
			}
		})
	}
	wg.Wait()
	var total loadResult
	total.elapsed = time.Since(start)
	for _, r := range results {
		total.merge(r)
	}
	total.finish()
	return total, nil
}

// openLoop sends the requests next gives, one every interval, for n
// requests, on a pool of workers connections, and measures each latency
// from the moment the request was due. Requests wait for a free connection
// in the schedule's order, and that wait counts.
func openLoop(addr string, workers, n int, interval time.Duration, next func(i int) []byte, want int) (loadResult, error) {
	type job struct {
		due time.Time
		req []byte
	}
	jobs := make(chan job, n)
	conns := make([]*conn, workers)
	for i := range conns {
		c, err := dial(addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.close()
			}
			return loadResult{}, err
		}
		conns[i] = c
	}
	results := make([]loadResult, workers)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			defer c.close()
			res := &results[i]
			for j := range jobs {
				if c.c == nil {
					res.errors++
					continue
				}
				status, _, err := c.do(j.req, false)
				lat := time.Since(j.due)
				if err != nil || status != want {
					res.errors++
					if res.firstErr == nil {
						res.firstErr = fmt.Errorf("status %d, error %v", status, err)
					}
					continue
				}
				res.requests++
				res.latencies = append(res.latencies, lat)
			}
		})
	}
	// The schedule is kept by this goroutine alone, on its own thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		sleepUntil(due)
		jobs <- job{due: due, req: next(i)}
	}
	close(jobs)
	wg.Wait()
	var total loadResult
	total.elapsed = time.Since(start)
	for _, r := range results {
		total.merge(r)
	}
	total.finish()
	return total, nil
}

// drainLoop is closedLoop over a shared supply of one-shot requests (sign-in
// links): each connection takes the next until d is over or none are left.
func drainLoop(addr string, workers int, reqs [][]byte, want int, d time.Duration) (loadResult, error) {
	var next atomic.Int64
	conns := make([]*conn, workers)
	for i := range conns {
		c, err := dial(addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.close()
			}
			return loadResult{}, err
		}
		conns[i] = c
	}
	results := make([]loadResult, workers)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	var last atomic.Int64 // nanoseconds after start of the last answer
	for i, c := range conns {
		wg.Go(func() {
			defer c.close()
			res := &results[i]
			for time.Now().Before(deadline) {
				k := next.Add(1) - 1
				if k >= int64(len(reqs)) || c.c == nil {
					return
				}
				t0 := time.Now()
				status, _, err := c.do(reqs[k], false)
				now := time.Now()
				if err != nil || status != want {
					res.errors++
					if res.firstErr == nil {
						res.firstErr = fmt.Errorf("status %d, error %v", status, err)
					}
					continue
				}
				res.requests++
				res.latencies = append(res.latencies, now.Sub(t0))
				for {
					l := last.Load()
					at := int64(now.Sub(start))
					if at <= l || last.CompareAndSwap(l, at) {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	var total loadResult
	total.elapsed = time.Duration(last.Load())
	if total.elapsed == 0 {
		total.elapsed = time.Since(start)
	}
	for _, r := range results {
		total.merge(r)
	}
	total.finish()
	return total, nil
}

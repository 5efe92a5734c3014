package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStartTimeout bounds how long a redis-server may take to answer PING.
// It starts in milliseconds; the margin is for a CI machine under load.
const redisStartTimeout = 15 * time.Second

// Redis is a redis-server process owned by the test, on 127.0.0.1 and a free
// port, without persistence: a restart starts empty, as after a crash of a
// cache-only Redis.
type Redis struct {
	t      testing.TB
	port   int
	dir    string
	args   []string
	client *redis.Client

	mu   sync.Mutex
	proc *process
}

// StartRedis starts
//
//	redis-server --port P --bind 127.0.0.1 --save "" --appendonly no --dir <tmp> --logfile <tmp>/redis.log
//
// with extraArgs appended (for example "--maxmemory", "10mb", or
// "--requirepass", "secret"), and waits until it answers PING. The process is
// killed and its directory removed at cleanup.
func StartRedis(t testing.TB, extraArgs ...string) *Redis {
	t.Helper()
	requireCommand(t, "redis-server", "redis-server")
	dir := tempDir(t, "redis")
	r := &Redis{t: t, dir: dir}
	r.port, r.proc = startRedisServer(t, "redis-server", filepath.Join(dir, "redis.log"), func(port int) []string {
		r.args = append(redisBaseArgs(port, dir), extraArgs...)
		return r.args
	})
	r.client = redis.NewClient(&redis.Options{
		Addr:        r.Addr(),
		Password:    argValue(extraArgs, "--requirepass"),
		DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second,
	})
	t.Cleanup(func() { r.client.Close() })
	return r
}

// Addr is the server's host:port, 127.0.0.1:P.
func (r *Redis) Addr() string { return addr(r.port) }

// URL is the server's URL for `store redis`, redis://127.0.0.1:P/0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Client is a go-redis client to the server, closed at cleanup, with the
// password of --requirepass if extraArgs set one. It reconnects by itself
// after Kill and Restart.
func (r *Redis) Client() *redis.Client { return r.client }

// LogPath is the file redis-server logs to (with its stdout and stderr).
func (r *Redis) LogPath() string { return filepath.Join(r.dir, "redis.log") }

// Kill ends the server with SIGKILL, as a crash would, and returns once it
// has exited, so the port is closed when Kill returns.
func (r *Redis) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proc.kill()
}

// Stop ends the server with SIGTERM, and SIGKILL if it has not exited within
// five seconds.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proc.stop(5 * time.Second)
}

// Restart starts the server again on the same port, with the same arguments
// and log file, after killing it if it still runs, and waits until it
// answers PING. The data is gone: there is no persistence. Tests use it to
// check that the gateway recovers by itself when Redis comes back.
func (r *Redis) Restart() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proc.kill()
	p := startProcess(r.t, "redis-server", r.LogPath(), nil, "redis-server", r.args...)
	if err := poll(redisStartTimeout, func() error { return redisReady(r.Addr(), p) }, p); err != nil {
		p.kill()
		r.t.Fatalf("harness: restart redis-server on %s: %v\n%s", r.Addr(), err, logTail(r.LogPath()))
	}
	r.proc = p
}

// CommandStats returns how many times each command was called since the
// server started (or since ResetCommandStats), from INFO commandstats.
// Keys are lower-case command names as Redis reports them, subcommands with
// a bar ("get", "evalsha", "client|setinfo"). The counts include the
// connection set-up of go-redis (hello, client|setinfo) and earlier calls of
// CommandStats itself (info), so a benchmark should compare two snapshots.
func (r *Redis) CommandStats(ctx context.Context) (map[string]int64, error) {
	info, err := r.client.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	return parseCommandStats(info)
}

// ResetCommandStats zeroes the counters CommandStats reads (CONFIG RESETSTAT).
func (r *Redis) ResetCommandStats(ctx context.Context) error {
	return r.client.ConfigResetStat(ctx).Err()
}

// parseCommandStats reads lines such as
// "cmdstat_get:calls=10,usec=25,usec_per_call=2.50,rejected_calls=0,failed_calls=0".
func parseCommandStats(info string) (map[string]int64, error) {
	stats := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, fields, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		for f := range strings.SplitSeq(fields, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("commandstats %s: %w", name, err)
				}
				stats[name] = n
			}
		}
	}
	return stats, sc.Err()
}

// redisBaseArgs are the arguments every data node gets: loopback only, no
// persistence (nothing to clean up, nothing to reload on restart), our log.
func redisBaseArgs(port int, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"),
	}
}

// startRedisServer starts redis-server with args(port) on a free port and
// waits until it answers. Redis logs to logPath itself; its stdout and
// stderr, where a bad argument is reported, go to the same file. When the
// port was taken between FreePort and the bind, it tries another one.
func startRedisServer(t testing.TB, what, logPath string, args func(port int) []string) (int, *process) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := FreePort(t)
		_ = os.Remove(logPath)
		p := startProcess(t, what, logPath, nil, "redis-server", args(port)...)
		err := poll(redisStartTimeout, func() error { return redisReady(addr(port), p) }, p)
		if err == nil {
			return port, p
		}
		p.kill()
		tail := logTail(logPath)
		if attempt < 3 && strings.Contains(tail, "Address already in use") {
			continue
		}
		t.Fatalf("harness: start %s on %s: %v\n%s", what, addr(port), err, tail)
	}
}

// redisReady checks that the server on a answers PING and is our process p,
// not some other server that won the race for the port.
func redisReady(a string, p *process) error {
	pong, err := redisDo(a, "PING")
	if err != nil {
		if isAuthError(err) {
			// Started with --requirepass: it answers, but will not say
			// its pid to a stranger.
			return nil
		}
		return err
	}
	if pong != "PONG" {
		return fmt.Errorf("PING answered %q", pong)
	}
	info, err := redisDo(a, "INFO", "server")
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("process_id:%d\r\n", p.cmd.Process.Pid); !strings.Contains(info, want) {
		return fmt.Errorf("%s is answered by another process than ours", a)
	}
	return nil
}

// isAuthError reports whether a server refused a command for want of a
// password, which still proves it is up.
func isAuthError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "NOAUTH") || strings.Contains(msg, "WRONGPASS")
}

// redisDo sends one command on a fresh connection and returns a simple,
// integer or bulk reply. The readiness checks use it instead of go-redis
// because it keeps no pool and has no retries that would stretch a poll.
func redisDo(a string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", a, 500*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("%s: %s", args[0], line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("%s: bad bulk reply %q", args[0], line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("%s: unexpected reply %q", args[0], line)
	}
}

// argValue returns the value following flag in args, or "".
func argValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// requireCommand fails the test when a program the harness runs is missing,
// naming the Debian package that provides it.
func requireCommand(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("harness: %s not found in PATH: install it with apt-get install %s", name, pkg)
	}
}

// freeze stops the process with SIGSTOP: it keeps its sockets but answers
// nothing, as a host that hangs (a long GC pause, a VM migration) would. The
// kernel still buffers what peers send it, so a frozen replica catches up on
// thaw unless its link is cut too (CutReplicas).
func (p *process) freeze() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// thaw resumes a frozen process with SIGCONT.
func (p *process) thaw() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// CutReplicas closes the master's connections to its replicas
// (CLIENT KILL TYPE replica): whatever the master writes next reaches them
// only after they reconnect and resynchronise, which a frozen or dead master
// prevents.
func CutReplicas(t testing.TB, masterAddr string) {
	t.Helper()
	if _, err := redisDo(masterAddr, "CLIENT", "KILL", "TYPE", "replica"); err != nil {
		t.Fatalf("harness: CLIENT KILL TYPE replica on %s: %v", masterAddr, err)
	}
}

// Role is the first word of ROLE on a: "master", "slave" or "sentinel".
func Role(a string) (string, error) {
	info, err := redisDo(a, "INFO", "replication")
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "role:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s: no role in INFO replication", a)
}

// replicaLinkUp checks that the replica on a has an up link to its master
// and has finished its initial sync.
func replicaLinkUp(a string) error {
	info, err := redisDo(a, "INFO", "replication")
	if err != nil {
		return err
	}
	if !strings.Contains(info, "master_link_status:up") || strings.Contains(info, "master_sync_in_progress:1") {
		return fmt.Errorf("%s: replica link not up yet", a)
	}
	return nil
}

// WaitReplicated waits until the replica at replica has applied everything
// the master at master had written when WaitReplicated was called (its
// slave_repl_offset reaches the master's master_repl_offset).
func WaitReplicated(t testing.TB, master, replica string) {
	t.Helper()
	want, err := replOffset(master, "master_repl_offset")
	if err != nil {
		t.Fatalf("harness: WaitReplicated: %v", err)
	}
	waitFor(t, replica+" caught up with "+master, 10*time.Second, func() error {
		got, err := replOffset(replica, "slave_repl_offset")
		if err != nil {
			return err
		}
		if got < want {
			return fmt.Errorf("replica at offset %d, master was at %d", got, want)
		}
		return nil
	})
}

// replOffset reads one offset field of INFO replication.
func replOffset(a, field string) (int64, error) {
	info, err := redisDo(a, "INFO", "replication")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s in INFO replication", a, field)
}

// WaitSynced waits until this server, started with --replicaof, has an up
// link to its master and has finished its initial sync.
func (r *Redis) WaitSynced(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	waitFor(t, "replica "+r.Addr()+" synced", 20*time.Second, func() error { return replicaLinkUp(r.Addr()) }, p)
}

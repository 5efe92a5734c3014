package harness

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeouts of the Firefox helpers. Firefox starts in a few seconds here.
const (
	firefoxStartTimeout   = 45 * time.Second
	firefoxCommandTimeout = 20 * time.Second
	firefoxStopGrace      = 5 * time.Second
)

// firefoxPaths are tried in order: Debian's ESR package first.
var firefoxPaths = []string{"firefox-esr", "firefox"}

// firefoxDriverDir is the Node driver's folder, relative to the module root.
const firefoxDriverDir = "integration/firefox"

func firefoxPath() string {
	for _, p := range firefoxPaths {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	return ""
}

// FirefoxMissing says what is missing to run Firefox tests (the browser,
// Node, or the driver's node_modules), or "" when nothing is.
func FirefoxMissing() string {
	if firefoxPath() == "" {
		return "firefox-esr (apt-get install firefox-esr)"
	}
	if _, err := exec.LookPath("node"); err != nil {
		return "node (apt-get install nodejs npm)"
	}
	root, err := ModuleRoot()
	if err != nil {
		return "the module root: " + err.Error()
	}
	if _, err := os.Stat(filepath.Join(root, firefoxDriverDir, "node_modules", "puppeteer-core")); err != nil {
		return "the driver's packages (npm ci in " + firefoxDriverDir + ")"
	}
	return ""
}

// FirefoxOptions says how StartFirefox runs Firefox.
type FirefoxOptions struct {
	// CookieBehavior is network.cookie.cookieBehavior: 5 (Total Cookie
	// Protection, Firefox's default: third-party cookies partitioned),
	// 1 (every third-party cookie blocked, partitioned ones too). It is
	// always set, because puppeteer's profile defaults touch the
	// content-blocking prefs. Default (0 here): 5.
	CookieBehavior int
}

// Firefox is a headless Firefox ESR driven over WebDriver BiDi through
// puppeteer-core (integration/firefox/driver.mjs). Every hostname resolves to
// 127.0.0.1 (network.dns.forceResolve), and TLS errors are ignored.
type Firefox struct {
	t    testing.TB
	proc *process
	in   io.WriteCloser

	mu     sync.Mutex // one command at a time
	nextID int
	out    chan firefoxAnswer
}

type firefoxAnswer struct {
	ID    int             `json:"id"`
	OK    bool            `json:"ok"`
	Value json.RawMessage `json:"value"`
	Error string          `json:"error"`
}

// StartFirefox starts Firefox with a fresh profile, stopped at cleanup. The
// prefs keep it off the network (no updates, telemetry, captive portal or
// DNS over HTTPS) and map every host to loopback.
//
// Without Firefox, Node or the driver's node_modules the test is skipped,
// except under CI (CI set), where it fails.
func StartFirefox(t testing.TB, opt FirefoxOptions) *Firefox {
	t.Helper()
	if missing := FirefoxMissing(); missing != "" {
		msg := "harness: Firefox test needs " + missing
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " — not allowed under CI")
		}
		t.Skip(msg + "; skipped")
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	behavior := opt.CookieBehavior
	if behavior == 0 {
		behavior = 5
	}
	prefs, err := json.Marshal(map[string]any{
		"network.cookie.cookieBehavior":          behavior,
		"network.dns.forceResolve":               "127.0.0.1",
		"network.trr.mode":                       5,
		"network.proxy.type":                     0,
		"network.captive-portal-service.enabled": false,
		"network.connectivity-service.enabled":   false,
		"app.update.enabled":                     false,
		"extensions.systemAddon.update.enabled":  false,
		"browser.region.network.url":             "",
		"dom.security.https_first":               false,
		"toolkit.telemetry.enabled":              false,
		"browser.safebrowsing.malware.enabled":   false,
		"browser.safebrowsing.phishing.enabled":  false,
		"browser.safebrowsing.downloads.enabled": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := tempDir(t, "firefox")
	logPath := filepath.Join(dir, "driver.log")
	cmd := exec.Command("node", filepath.Join(root, firefoxDriverDir, "driver.mjs"), firefoxPath(), string(prefs))
	cmd.Dir = filepath.Join(root, firefoxDriverDir)
	// Firefox and its profile stay inside the test's temp dir.
	cmd.Env = append(os.Environ(), "HOME="+dir, "TMPDIR="+dir, "MOZ_CRASHREPORTER_DISABLE=1")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("harness: firefox log: %v", err)
	}
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("harness: start the Firefox driver: %v", err)
	}
	p := &process{name: "firefox driver", cmd: cmd, logPath: logPath, done: make(chan struct{})}
	f := &Firefox{t: t, proc: p, in: in, nextID: 1, out: make(chan firefoxAnswer, 1)}
	// Stdout is read to its end before Wait, as os/exec requires.
	go func() {
		sc := bufio.NewScanner(outPipe)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			var a firefoxAnswer
			if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
				fmt.Fprintf(logf, "harness: driver wrote %q\n", sc.Text())
				continue
			}
			f.out <- a
		}
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(f.stop)

	select {
	case a := <-f.out:
		if !a.OK {
			t.Fatalf("harness: Firefox did not start: %s\n%s", a.Error, logTail(logPath))
		}
	case <-p.done:
		t.Fatalf("harness: %s\n%s", p.status(), logTail(logPath))
	case <-time.After(firefoxStartTimeout):
		t.Fatalf("harness: Firefox did not start within %v\n%s", firefoxStartTimeout, logTail(logPath))
	}
	return f
}

// stop asks the driver to close Firefox, and kills it if it does not.
func (f *Firefox) stop() {
	if !f.proc.exited() {
		_, _ = f.call(map[string]any{"op": "close"}, firefoxStopGrace)
		_ = f.in.Close()
	}
	f.proc.stop(firefoxStopGrace)
}

// call sends one command and waits for its answer.
func (f *Firefox) call(cmd map[string]any, timeout time.Duration) (json.RawMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID
	f.nextID++
	cmd["id"] = id
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if _, err := f.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("firefox driver: %w (%s)", err, f.proc.status())
	}
	deadline := time.After(timeout)
	for {
		select {
		case a := <-f.out:
			if a.ID != id {
				continue // the late answer of a command that timed out
			}
			if !a.OK {
				return nil, errors.New(a.Error)
			}
			return a.Value, nil
		case <-f.proc.done:
			return nil, fmt.Errorf("firefox driver: %s\n%s", f.proc.status(), logTail(f.proc.logPath))
		case <-deadline:
			return nil, fmt.Errorf("firefox driver: %v gave no answer within %v", cmd["op"], timeout)
		}
	}
}

// Goto loads url in the first tab and waits for its load event.
func (f *Firefox) Goto(t testing.TB, url string) {
	t.Helper()
	if _, err := f.call(map[string]any{"op": "goto", "url": url}, firefoxCommandTimeout); err != nil {
		t.Fatalf("firefox: load %s: %v", url, err)
	}
}

// Eval evaluates the JavaScript expression js in the first frame, of any tab
// and at any depth, whose URL starts with urlPrefix, and decodes its JSON
// result into out. It returns the error (no such frame yet, a frame
// navigating) for the caller to poll.
func (f *Firefox) Eval(urlPrefix, js string, out any) error {
	v, err := f.call(map[string]any{"op": "eval", "url": urlPrefix, "js": js}, firefoxCommandTimeout)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(v, out)
}

// Click clicks on the element of selector, with real input events (so the
// page sees a user activation), in the frame whose URL starts with urlPrefix.
func (f *Firefox) Click(t testing.TB, urlPrefix, selector string) {
	t.Helper()
	if _, err := f.call(map[string]any{"op": "click", "url": urlPrefix, "selector": selector}, firefoxCommandTimeout); err != nil {
		t.Fatalf("firefox: click %s in %s: %v (frames: %s)", selector, urlPrefix, err, f.Frames())
	}
}

// Frames lists the URLs of every tab and frame, top-level documents first,
// for failure messages.
func (f *Firefox) Frames() string {
	v, err := f.call(map[string]any{"op": "frames"}, firefoxCommandTimeout)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	var urls []string
	_ = json.Unmarshal(v, &urls)
	return strings.Join(urls, ", ")
}

package harness

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Firefox loads a page over TLS with an untrusted certificate, at a host
// name mapped to loopback, evaluates script in it and in a cross-site frame,
// and clicks with real input events.
func TestFirefox(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		if r.URL.Path == "/inner" {
			fmt.Fprint(w, `<!doctype html><button id="b" onclick="this.textContent='clicked'">click</button>`)
			return
		}
		port := r.Host[strings.LastIndexByte(r.Host, ':')+1:]
		fmt.Fprintf(w, `<!doctype html><title>outer</title><iframe src="https://inner.test:%s/inner"></iframe>`, port)
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	f := StartFirefox(t, FirefoxOptions{})
	f.Goto(t, "https://outer.test:"+port+"/")
	var title string
	if err := f.Eval("https://outer.test:", "document.title", &title); err != nil || title != "outer" {
		t.Fatalf("title %q, %v", title, err)
	}
	inner := "https://inner.test:" + port + "/inner"
	var text string
	err := poll(frameWaitTimeout, func() error {
		return f.Eval(inner, `document.getElementById("b").textContent`, &text)
	})
	if err != nil || text != "click" {
		t.Fatalf("frame: %q, %v (frames %s)", text, err, f.Frames())
	}
	f.Click(t, inner, "#b")
	if err := f.Eval(inner, `document.getElementById("b").textContent`, &text); err != nil || text != "clicked" {
		t.Fatalf("after the click: %q, %v", text, err)
	}
}

package bench

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ssogate/ssogate/integration/harness"
)

// The benchmark's flags, given after the package:
// go test -bench Gateway -benchtime 1x ./integration/bench -rounds 3.
var (
	flagRounds     = flag.Int("rounds", 5, "alternating throughput rounds per configuration")
	flagDuration   = flag.Duration("duration", 3*time.Second, "length of each throughput round")
	flagConns      = flag.Int("conns", 16, "keep-alive connections (one signed-in browser each)")
	flagRedeemRate = flag.Int("redeem-rate", 1000, "redeems per second of the fixed-rate run")
	flagRedeemFor  = flag.Duration("redeem-for", 5*time.Second, "length of the fixed-rate redeem run")
	flagSessions   = flag.Int("sessions", 100000, "sessions in the memory store measurement")
	flagGoBench    = flag.String("gobenchtime", "500ms", "-benchtime of the caddymodule Go benchmarks")
	flagOut        = flag.String("out", "bench-results/latest.md", "report file, relative to the module root")
)

// BenchmarkGateway is `make bench`: one pass of the whole load benchmark
// (see the package documentation) per iteration, so run it with
// -benchtime 1x. It prints the markdown table, writes it to -out and reports
// the headline figures as metrics.
func BenchmarkGateway(b *testing.B) {
	// Caddy's packages, linked in for the memory store, send the standard
	// logger to zap; progress goes to stderr as plain lines instead.
	log.SetOutput(os.Stderr)
	log.SetFlags(log.Ltime)
	root, err := harness.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	o := options{
		rounds: *flagRounds, duration: *flagDuration, conns: *flagConns,
		redeemRate: *flagRedeemRate, redeemFor: *flagRedeemFor, sessions: *flagSessions,
		benchtime: *flagGoBench, out: *flagOut,
	}
	var r *report
	for b.Loop() {
		r = run(b, o, root)
	}
	md := r.markdown()
	fmt.Print(md)
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		b.Fatal(err)
	}
	log.Printf("wrote %s", out)

	plain, _, _ := r.medians(r.targets[0])
	gated, p50, _ := r.medians(r.targets[1])
	b.ReportMetric(plain, "plain-req/s")
	b.ReportMetric(gated, "ssogate-req/s")
	b.ReportMetric(r.ratio(r.targets[1]), "ssogate/plain")
	b.ReportMetric(float64(p50)/float64(time.Millisecond), "ssogate-p50-ms")
	b.ReportMetric(float64(r.redeemFixed.percentile(50))/float64(time.Millisecond), "redeem-p50-ms")
	b.ReportMetric(float64(r.redeemConfirmed.percentile(50))/float64(time.Millisecond), "redeem-confirmed-p50-ms")
	b.ReportMetric(r.memPerSession, "B/session")
	b.ReportMetric(0, "ns/op") // one pass of the whole benchmark: not a figure
}

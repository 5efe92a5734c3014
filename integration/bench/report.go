package bench

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// round is one throughput round of one configuration.
type round struct {
	rate     float64
	p50, p99 time.Duration
}

// report is everything one run measured.
type report struct {
	opts options
	date string
	cpu  string
	took time.Duration
	// 1-minute load averages before and after the run.
	loadBefore, loadAfter string
	notes                 []string

	targets    []string // plain first: the reference of the ratios
	throughput map[string][]round
	commands   map[string]commandCount // by target name, and "redeem"

	redeemFixed        loadResult
	redeemConfirmed    loadResult // with consume_replicas 1 and one replica
	redeemMax          loadResult
	redeemMaxExhausted bool

	memPerSession float64
	goBench       []string
}

func median[T float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *report) medians(name string) (rate float64, p50, p99 time.Duration) {
	var rates []float64
	var p50s, p99s []time.Duration
	for _, x := range r.throughput[name] {
		rates = append(rates, x.rate)
		p50s = append(p50s, x.p50)
		p99s = append(p99s, x.p99)
	}
	return median(rates), median(p50s), median(p99s)
}

// ratio is the median over rounds of name's rate over plain's in the same
// round: the configurations of one round run back to back, so a machine
// shared with other work slows them alike, which a ratio of medians taken
// over different rounds would not cancel.
func (r *report) ratio(name string) float64 {
	plain := r.throughput[r.targets[0]]
	var ratios []float64
	for i, x := range r.throughput[name] {
		ratios = append(ratios, x.rate/plain[i].rate)
	}
	return median(ratios)
}

func (r *report) markdown() string {
	var b strings.Builder
	o := r.opts
	fmt.Fprintf(&b, "# ssogate load benchmark\n\n")
	fmt.Fprintf(&b, "%s · %s, %d CPUs · %s/%s · `make bench` took %s · load average %s before, %s after\n\n",
		r.date, r.cpu, runtime.NumCPU(), runtime.Version(), runtime.GOARCH, r.took.Round(time.Second), r.loadBefore, r.loadAfter)
	fmt.Fprintf(&b, "Loopback only; load generator, upstream, Caddy and Redis share the machine. "+
		"Signed-in traffic: cleartext HTTP/1.1 keep-alive, %d connections (one signed-in browser each, "+
		"with the portal's own cookies), `GET /patients/42`, upstream answers 1 KiB; every ssogate "+
		"configuration has `embed_from` on (frame-ancestors and Set-Cookie rewriting); %d alternating rounds "+
		"of %s per configuration, medians.\n\n", o.conns, o.rounds, o.duration)

	fmt.Fprintf(&b, "| Signed-in requests | req/s | p50 | p99 | vs plain (median of per-round ratios) |\n|---|--:|--:|--:|--:|\n")
	for _, name := range r.targets {
		rate, p50, p99 := r.medians(name)
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %.3f |\n", name, rate, ms(p50), ms(p99), r.ratio(name))
	}

	fmt.Fprintf(&b, "\n| Redis commands | per request |\n|---|---|\n")
	for _, name := range r.targets[1:] {
		fmt.Fprintf(&b, "| signed-in request, %s | %s |\n", strings.TrimPrefix(name, "ssogate, "), r.commands[name].perRequest())
	}
	fmt.Fprintf(&b, "| redeem | %s |\n", r.commands["redeem"].perRequest())
	fmt.Fprintf(&b, "| redeem, consume_replicas 1 | %s |\n", r.commands["redeem, consume_replicas 1"].perRequest())

	f := r.redeemFixed
	fmt.Fprintf(&b, "\n| Redeem (`GET /redirect/{token}` → 302 + session, store redis) | |\n|---|---|\n")
	fmt.Fprintf(&b, "| at %d/s for %s, open loop (latency from the scheduled send): p50 / p99 / max | %s / %s / %s |\n",
		o.redeemRate, o.redeemFor, ms(f.percentile(50)), ms(f.percentile(99)), ms(f.percentile(100)))
	c := r.redeemConfirmed
	fmt.Fprintf(&b, "| the same, each redeem confirmed by a replica (`consume_replicas 1`, one replica on loopback): p50 / p99 / max | %s / %s / %s |\n",
		ms(c.percentile(50)), ms(c.percentile(99)), ms(c.percentile(100)))
	more := ""
	if r.redeemMaxExhausted {
		more = " (ran out of tokens: at least this)"
	}
	fmt.Fprintf(&b, "| maximum, %d connections, closed loop | %.0f/s%s, p99 %s |\n", o.conns, r.redeemMax.rate(), more, ms(r.redeemMax.percentile(99)))

	fmt.Fprintf(&b, "\n| Memory | |\n|---|---|\n")
	fmt.Fprintf(&b, "| memory store, per idle session (%d sessions, user id and shared claims included) | %.0f bytes |\n", o.sessions, r.memPerSession)

	fmt.Fprintf(&b, "\nThroughput rounds (req/s):\n\n| round |")
	for _, name := range r.targets {
		fmt.Fprintf(&b, " %s |", name)
	}
	fmt.Fprintf(&b, "\n|--:|%s\n", strings.Repeat("--:|", len(r.targets)))
	for i := range o.rounds {
		fmt.Fprintf(&b, "| %d |", i+1)
		for _, name := range r.targets {
			fmt.Fprintf(&b, " %.0f |", r.throughput[name][i].rate)
		}
		b.WriteString("\n")
	}

	fmt.Fprintf(&b, "\nGo benchmarks, `go test -run='^$' -bench=. -benchmem -benchtime=%s ./caddymodule/`:\n\n```\n", o.benchtime)
	for _, line := range r.goBench {
		b.WriteString(line + "\n")
	}
	b.WriteString("```\n")
	for _, n := range r.notes {
		b.WriteString("\n" + n + "\n")
	}
	return b.String()
}

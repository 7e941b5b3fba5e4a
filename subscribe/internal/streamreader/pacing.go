package streamreader

import (
	"context"
	"math/rand/v2"
	"time"
)

// sleep waits d on a real timer, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pacer spaces the starts of calls at least interval apart, measured on
// clock, across goroutines. Callers wait their turn in arrival order.
type pacer struct {
	interval time.Duration
	clock    func() time.Time
	turn     chan struct{} // holds a token while a caller waits for its slot
	last     time.Time     // start of the last call let through
}

func newPacer(interval time.Duration, clock func() time.Time) *pacer {
	return &pacer{interval: interval, clock: clock, turn: make(chan struct{}, 1)}
}

// wait returns when a call may start, or ctx's error.
func (p *pacer) wait(ctx context.Context) error {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.turn }()
	if !p.last.IsZero() {
		if err := sleep(ctx, p.last.Add(p.interval).Sub(p.clock())); err != nil {
			return err
		}
	}
	p.last = p.clock()
	return nil
}

// backoff returns the delay before retry number attempt (1, 2, …): base
// doubled attempt-1 times, capped at limit, with equal jitter (half fixed,
// half random) so that readers throttled together do not retry together.
func backoff(base, limit time.Duration, attempt int) time.Duration {
	d := max(base, time.Millisecond)
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	half := d / 2
	return half + rand.N(d-half+1)
}

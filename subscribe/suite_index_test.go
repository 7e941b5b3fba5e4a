package subscribe

import (
	"fmt"
	"testing"

	"github.com/dynamodb-event-store/eventstore/store"
)

// indexHarness runs the source suite against the index source. Its own
// cases, beyond the suite, are in late_test.go (a clock the test controls).
var indexHarness = registerHarness(sourceHarness{
	name:         "index",
	tableOptions: store.TableOptions{NoStream: true},
	buckets:      true,
	countsLate:   true,
	configure: func(sub *Subscription, tn tuning) {
		sub.Source = SourceIndex
		sub.Index = fast
		sub.Index.Settle, sub.Index.Overlap = tn.settle, tn.reread
		if tn.reread < 0 {
			sub.Index.Overlap = -1
		}
	},
	withhold: func(_ testing.TB, cfg *Config, s *store.Store) (hide, reveal func(store.Position)) {
		r := &withholdingReader{Store: s}
		cfg.Reader = r
		return r.hide, r.reveal
	},
	claimed: indexClaimed,
})

func TestIndexSourceSuite(t *testing.T) { runSourceSuite(t, indexHarness) }

// indexClaimed reads an index checkpoint: a restart from it takes as
// handled the versions below each listed aggregate's next one, and every
// commit at or before its base position except the pending ones and those
// after its sweep position that the restart re-reads (their aggregate not
// listed as handled that far).
func indexClaimed(t testing.TB, position string) func(Commit) bool {
	saved, err := decodeIndexCheckpoint(position)
	if err != nil {
		t.Fatal(err)
	}
	pending := map[string]bool{}
	for _, p := range saved.Pending {
		pending[fmt.Sprintf("%s %d", p.AggregateID, p.Version)] = true
	}
	return func(c Commit) bool {
		m, listed := saved.Aggregates[c.AggregateID]
		switch {
		case listed && c.Version < m.Next:
			return true
		case c.Position().Compare(saved.After) > 0:
			return false
		case pending[fmt.Sprintf("%s %d", c.AggregateID, c.Version)]:
			return false
		}
		reread := c.Position().Compare(saved.Sweep) > 0 && (!listed || m.Next <= c.Version)
		return !reread
	}
}

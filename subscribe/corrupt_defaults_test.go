package subscribe

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/internal/ddbtest"
	"github.com/dynamodb-event-store/eventstore/store"
)

// TestCorruptAndGapWithDefaults runs the index source with every default
// (Settle 1 s, PollMax 2 s, GapTimeout 30 s, CorruptPark) and logs how long
// after the write an item alone with a commit id "garbage:…" and an
// unfillable gap take to be parked: bounded by the future probe's period
// (10 × PollMax) and by GapTimeout plus a poll. It takes about 40 s: set
// EVENTSTORE_FAULT_DEFAULTS=1 to run it.
func TestCorruptAndGapWithDefaults(t *testing.T) {
	if os.Getenv("EVENTSTORE_FAULT_DEFAULTS") == "" {
		t.Skip("set EVENTSTORE_FAULT_DEFAULTS=1 to run (about 40 s)")
	}
	defaults := indexHarness
	defaults.configure = func(sub *Subscription, _ tuning) { sub.Source = SourceIndex } // every option its default
	e := newSuiteEnv(t, defaults, store.Config{})
	rep := &faultReports{}
	rec := newRecorder()
	w, stop := e.start(t, Subscription{Name: "defaults", Handler: rec}, tuning{}, rep)
	defer mustStop(t, stop)
	waitRunning(t, w)
	appendVersions(t, e.s, []string{"g"}, 0, 2)
	if _, err := e.s.Append(context.Background(), store.Commit{AggregateID: "g", Version: 3, Events: deposit(t)}); err != nil {
		t.Fatal(err)
	}
	gapAt := time.Now()
	e.putRaw(t, "junk", "0", func(item map[string]types.AttributeValue) {
		item[store.AttrCommitID] = &types.AttributeValueMemberS{Value: "garbage:junk"}
	})
	junkAt := time.Now()
	parked := func(key string) bool { _, ok := parkedOf(t, e.cfg.Checkpoints, "defaults")[key]; return ok }
	var junkTook, gapTook time.Duration
	ddbtest.Eventually(t, 60*time.Second, func() bool {
		if junkTook == 0 && parked("junk#0") {
			junkTook = time.Since(junkAt)
		}
		if gapTook == 0 && parked("g#3") {
			gapTook = time.Since(gapAt)
		}
		return junkTook > 0 && gapTook > 0
	}, "not both parked")
	t.Logf("with defaults: a garbage commit id alone parked %v after its write (bound 10 x PollMax = 20s plus a poll); an unfillable gap parked %v after the version after it (GapTimeout 30s plus a poll)", junkTook.Round(100*time.Millisecond), gapTook.Round(100*time.Millisecond))
	if gapTook < DefaultGapTimeout {
		t.Errorf("the gap was handled after %v, before the default GapTimeout", gapTook)
	}
	if r := parkedOf(t, e.cfg.Checkpoints, "defaults")["g#3"]; !strings.Contains(r, "version 2 missing") {
		t.Errorf("g#3 parked with reason %q", r)
	}
	if got := rec.delivered()["g"]; got != 2 {
		t.Errorf("g delivered up to version %d, want 2 (3 parked)", got)
	}
}

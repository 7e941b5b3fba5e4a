package daemon

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"

	"github.com/dynamodb-event-store/eventstore/store"
)

// checkBuckets refuses a bucket count (--buckets) that the commits table's
// items disagree with (see store.CheckBuckets): a worker with the wrong
// count reads some buckets only, or none. The error is a *ConfigError
// naming the setting as it was given. A missing table is left to the
// preflight; a failed check is a warning, as the worker retries reads.
func (p *plan) checkBuckets(ctx context.Context, api store.InspectAPI, log *slog.Logger) error {
	cfg := p.cfg
	err := store.CheckBuckets(ctx, api, store.Config{TableName: cfg.Table, IndexName: cfg.Index, IndexBuckets: cfg.Buckets})
	var be *store.BucketMismatchError
	switch {
	case err == nil, errors.Is(err, store.ErrTableNotFound), isCtxErr(ctx, err):
		return nil
	case errors.As(err, &be):
		facts := be.Error()
		if i := strings.Index(facts, "aggregate "); i >= 0 {
			facts = facts[i:]
		}
		return p.bucketsAt.errAt(strconv.Itoa(cfg.Buckets), "does not match commits table "+cfg.Table+": "+facts+
			"; every writer and reader of a table must use the same bucket count")
	}
	log.Warn("checking the bucket count against the commits table failed; going on", "table", cfg.Table, "buckets", cfg.Buckets, "err", err)
	return nil
}

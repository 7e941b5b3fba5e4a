package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/checkpoint/dynamocheckpoint"
	"github.com/dynamodb-event-store/eventstore/internal/awscfg"
	"github.com/dynamodb-event-store/eventstore/store"
	"github.com/dynamodb-event-store/eventstore/subscribe"
)

// EnvCheckpointTable sets the default of --checkpoint-table; the flag wins.
const EnvCheckpointTable = "EVENTSTORE_CHECKPOINT_TABLE"

// checkpointCommands are the subcommands of "eventstore checkpoint".
var checkpointCommands = []*command{
	checkpointListCommand,
	checkpointGetCommand,
	checkpointSetCommand,
	checkpointResetCommand,
	checkpointCreateTableCommand,
}

// checkpointFlags are the flags of the commands that read or write the
// checkpoint table: --checkpoint-table, how to reach DynamoDB and, for the
// commands that also read the commits table, where it is.
type checkpointFlags struct {
	sf      *storeFlags
	table   string
	commits bool // the command reads the commits table too
}

// addCheckpointFlags defines the flags on fs: the store flags when commits
// is true, else only --endpoint and --region; then --checkpoint-table.
func addCheckpointFlags(fs *flag.FlagSet, env func(string) string, commits bool) *checkpointFlags {
	f := &checkpointFlags{commits: commits}
	if commits {
		f.sf = addStoreFlags(fs, env)
	} else {
		f.sf = addConnectionFlags(fs, env)
	}
	fs.StringVar(&f.table, "checkpoint-table", envOr(env, EnvCheckpointTable, dynamocheckpoint.DefaultTableName),
		"checkpoint table `NAME` (checkpoints, parked commits, requests); $"+EnvCheckpointTable+"\nsets the default")
	return f
}

// addConnectionFlags defines only the --endpoint and --region flags of the
// store flags on fs, for commands that do not read the commits table.
func addConnectionFlags(fs *flag.FlagSet, env func(string) string) *storeFlags {
	all := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	sf := addStoreFlags(all, env)
	sf.fs = fs
	for _, name := range []string{"endpoint", "region"} {
		f := all.Lookup(name)
		fs.Var(f.Value, f.Name, f.Usage)
	}
	return sf
}

// open checks the flags and returns the commits store (nil unless the
// command reads the commits table) and the checkpoint store.
func (f *checkpointFlags) open(ctx context.Context, s *session) (*store.Store, *dynamocheckpoint.Store, error) {
	var (
		client *dynamodb.Client
		st     *store.Store
		err    error
	)
	if f.commits {
		if err := f.checkTable(); err != nil {
			return nil, nil, err
		}
		client, st, err = f.sf.open(ctx, s)
	} else {
		client, err = f.connect(ctx, s)
	}
	if err != nil {
		return nil, nil, err
	}
	cps, err := dynamocheckpoint.New(client, dynamocheckpoint.Config{TableName: f.table})
	if err != nil {
		return nil, nil, flagErrorf("--checkpoint-table %q: %w", f.table, err)
	}
	return st, cps, nil
}

// checkTable refuses a --checkpoint-table (or its variable) that is no
// table name.
func (f *checkpointFlags) checkTable() error {
	if n := len(f.table); n < 3 || n > 255 {
		set := false
		f.sf.fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == "checkpoint-table" })
		if !set && f.sf.env(EnvCheckpointTable) != "" {
			return withCode(ExitUsage, fmt.Errorf("%s=%q: want 3 to 255 characters", EnvCheckpointTable, f.table))
		}
		return flagErrorf("--checkpoint-table %q: want 3 to 255 characters", f.table)
	}
	return nil
}

// connect checks --checkpoint-table and --endpoint and returns a client,
// for a command that does not read the commits table.
func (f *checkpointFlags) connect(ctx context.Context, s *session) (*dynamodb.Client, error) {
	if err := f.checkTable(); err != nil {
		return nil, err
	}
	if err := awscfg.CheckEndpoint(f.sf.endpoint); err != nil {
		return nil, flagErrorf("--endpoint %v", err)
	}
	return f.sf.client(ctx, s.stderr)
}

// explain turns a missing checkpoint table into one clear message.
func (f *checkpointFlags) explain(err error) error {
	var rnf *types.ResourceNotFoundException
	if errors.As(err, &rnf) {
		return fmt.Errorf("checkpoint table %s not found (set by --checkpoint-table or $%s)", f.table, EnvCheckpointTable)
	}
	return err
}

// knownSubscriptions returns the names of the subscriptions with a
// checkpoint, in order. Corrupt items are passed over.
func knownSubscriptions(ctx context.Context, cps *dynamocheckpoint.Store) ([]string, error) {
	var subs []string
	for cp, err := range cps.List(ctx, "") {
		if err != nil {
			if errors.Is(err, dynamocheckpoint.ErrCorruptItem) {
				continue
			}
			return nil, err
		}
		if len(subs) == 0 || subs[len(subs)-1] != cp.Subscription {
			subs = append(subs, cp.Subscription)
		}
	}
	return subs, nil
}

// unknownSubscription returns the error, with exit status code, for a
// subscription with no checkpoint: what says so (e.g. `no checkpoint for
// subscription "x"`), then the message names the table and lists the known
// subscriptions. hint, if any, ends it.
func (f *checkpointFlags) unknownSubscription(ctx context.Context, cps *dynamocheckpoint.Store, what string, code int, hint string) error {
	msg := fmt.Sprintf("%s in table %s", what, f.table)
	known, err := knownSubscriptions(ctx, cps)
	switch {
	case err != nil:
		msg += fmt.Sprintf(" (listing the known subscriptions failed: %v)", f.explain(err))
	case len(known) == 0:
		msg += "; the table holds no checkpoint at all"
	default:
		const most = 20
		q := make([]string, 0, min(len(known), most))
		for _, k := range known[:min(len(known), most)] {
			q = append(q, strconv.Quote(k))
		}
		msg += "; known subscriptions: " + strings.Join(q, ", ")
		if len(known) > most {
			msg += fmt.Sprintf(" and %d more (eventstore checkpoint list)", len(known)-most)
		}
	}
	if hint != "" {
		msg += "; " + hint
	}
	return withCode(code, errors.New(msg))
}

// parseInterleaved parses flags that follow positional arguments too
// ("checkpoint set orders --to now"): the flag package stops at the first
// positional argument. It returns the positional arguments; "--" ends the
// flags. A bad flag is a usage error.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, flagErrorf("%s: put --help right after the command", fs.Name())
			}
			return nil, flagErrorf("%v", err)
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) > 0 {
			pos = append(pos, rest[0])
			rest = rest[1:]
		}
		args = rest
	}
	return pos, nil
}

// positionals parses the session's arguments with parseInterleaved and
// checks their number: want names them, in order.
func positionals(fs *flag.FlagSet, s *session, want ...string) ([]string, error) {
	pos, err := parseInterleaved(fs, s.args)
	if err != nil {
		return nil, err
	}
	return pos, checkPositionals(pos, want...)
}

// checkPositionals returns a usage error unless pos are the arguments
// want names, none empty.
func checkPositionals(pos []string, want ...string) error {
	switch {
	case len(pos) < len(want):
		return flagErrorf("missing %s", strings.Join(want[len(pos):], " and "))
	case len(pos) > len(want):
		return flagErrorf("unexpected argument %q", pos[len(want)])
	}
	for i, p := range pos {
		if p == "" {
			return flagErrorf("empty %s", want[i])
		}
	}
	return nil
}

// checkpointView is a checkpoint as the checkpoint commands show it; its
// JSON form is what --json prints.
type checkpointView struct {
	Subscription string     `json:"subscription"`
	Unit         string     `json:"unit"`
	Owner        string     `json:"owner"`
	Lease        int64      `json:"lease"`
	UpdatedAt    *time.Time `json:"updatedAt"`
	// Expires is when the owner's lease ends unless renewed; null when the
	// key has no owner or is held without a lease (a claim, which does not
	// expire).
	Expires *time.Time `json:"expires"`
	// Phase is the position's: index, catchup, stream, rejoin, or "" for
	// none.
	Phase          string          `json:"phase"`
	After          *store.Position `json:"after,omitempty"`
	Pending        int             `json:"pending,omitempty"`
	StreamARN      string          `json:"streamArn,omitempty"`
	Shards         int             `json:"shards,omitempty"`
	FinishedShards int             `json:"finishedShards,omitempty"`
	// Epoch and ParentShard describe a leased stream subscription's
	// checkpoints: the hand-over they belong to, and for a shard unit the
	// shard its shard was split from.
	Epoch         int64      `json:"epoch,omitempty"`
	ParentShard   string     `json:"parentShard,omitempty"`
	Aggregates    int        `json:"aggregates,omitempty"`
	HandledBefore *time.Time `json:"handledBefore,omitempty"`
	// InShards is true on the own row (unit "") of a leased stream
	// subscription whose stream has taken over: its ShardUnits shard units
	// of Epoch tell where it is, and its lag is the greatest of theirs, not
	// that of the hand-over's position its own checkpoint keeps (see
	// locateSubscriptions).
	InShards   bool `json:"inShards,omitempty"`
	ShardUnits int  `json:"shardUnits,omitempty"`
	// LagSeconds is null when unknown.
	LagSeconds    *float64        `json:"lagSeconds"`
	CaughtUp      bool            `json:"caughtUp"`
	PositionError string          `json:"positionError,omitempty"`
	Head          *store.Position `json:"head,omitempty"`
	Position      *string         `json:"position,omitempty"`

	info subscribe.CheckpointInfo
	lag  time.Duration
}

// headState is the commits table's head as read once per command.
type headState struct {
	pos   store.Position
	at    time.Time
	known bool // the head was read (an empty table has none: pos is zero)
	empty bool
}

func readHead(ctx context.Context, s *session, st *store.Store) headState {
	pos, ok, err := st.Head(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.warnf("lag unknown: reading the latest commit failed: %v", explainNotFound(err, st.Config().TableName))
		}
		return headState{}
	}
	if !ok {
		return headState{known: true, empty: true}
	}
	h := headState{pos: pos, known: true}
	if t, err := store.ParseCommitIDTime(pos.CommitID); err == nil {
		h.at = t
	} else {
		h.known = false
	}
	return h
}

func newCheckpointView(cp checkpoint.Checkpoint, head headState) checkpointView {
	v := checkpointView{Subscription: cp.Subscription, Unit: cp.Unit, Owner: cp.Owner, Lease: cp.Lease}
	if !cp.UpdatedAt.IsZero() {
		t := cp.UpdatedAt
		v.UpdatedAt = &t
	}
	if cp.Owner != "" && !cp.Expires.IsZero() {
		t := cp.Expires
		v.Expires = &t
	}
	info, err := subscribe.DescribeCheckpoint(cp.Position, 0)
	if err != nil {
		v.PositionError = err.Error()
		return v
	}
	v.info = info
	v.Phase, v.Pending, v.Aggregates = info.Phase, info.Pending, info.Aggregates
	v.StreamARN, v.Shards, v.FinishedShards = info.StreamARN, info.Shards, info.Finished
	v.Epoch, v.ParentShard = info.Epoch, info.Parent
	if info.Phase == "index" || info.Phase == "catchup" {
		after := info.After
		v.After = &after
	}
	if !info.HandledBefore.IsZero() {
		t := info.HandledBefore
		v.HandledBefore = &t
	}
	// Lag: the head's time less HandledBefore; caught up at the head.
	switch {
	case !head.known || info.Phase == "":
		return v
	case head.empty:
		v.CaughtUp = true
	default:
		var known bool
		if v.lag, v.CaughtUp, known = info.Behind(head.pos, head.at); !known {
			return v
		}
	}
	secs := v.lag.Seconds()
	v.LagSeconds = &secs
	return v
}

// locateSubscriptions makes the own row (unit "") of each subscription
// whose shard units tell where it is (subscribe.Locate: a leased stream
// subscription in shards, or in phase rejoin) say where it is: its lag
// becomes the greatest of its counted units' lags, unknown if any is
// unknown, and caught up if all are. views[i] is the view of cps[i].
func locateSubscriptions(views []checkpointView, cps []checkpoint.Checkpoint, now time.Time) {
	bySub := map[string][]int{}
	for i, cp := range cps {
		bySub[cp.Subscription] = append(bySub[cp.Subscription], i)
	}
	for _, idx := range bySub {
		own, unitView := -1, map[string]int{}
		sub := make([]checkpoint.Checkpoint, len(idx))
		for j, i := range idx {
			sub[j] = cps[i]
			unitView[cps[i].Unit] = i
			if cps[i].Unit == "" {
				own = i
			}
		}
		w := subscribe.Locate(sub, now)
		if own < 0 || w.Epoch == 0 {
			continue
		}
		whole := views[own] // the hand-over's position, for units not started
		v := &views[own]
		v.InShards = w.InShards
		v.ShardUnits = len(w.Units)
		if slices.Contains(w.Units, "") {
			v.ShardUnits--
		}
		var known bool
		v.lag, v.CaughtUp, known = w.Lag(func(u string) (time.Duration, bool, bool) {
			uv := whole
			if u != "" {
				uv = views[unitView[u]]
			}
			return uv.lag, uv.CaughtUp, uv.LagSeconds != nil
		})
		v.LagSeconds = nil
		if known {
			secs := v.lag.Seconds()
			v.LagSeconds = &secs
		}
	}
}

// locateOne returns v, the own checkpoint of a leased stream subscription
// after a hand-over, located among the subscription's other checkpoints
// (locateSubscriptions). When they cannot be listed, a warning says so and
// v is returned as it is.
func locateOne(ctx context.Context, s *session, cps *dynamocheckpoint.Store, v checkpointView, head headState) checkpointView {
	var all []checkpoint.Checkpoint
	for cp, err := range cps.List(ctx, v.Subscription) {
		if errors.Is(err, dynamocheckpoint.ErrCorruptItem) {
			continue
		}
		if err != nil {
			s.warnf("listing the shard units of subscription %q failed; the lag is the hand-over's: %v", v.Subscription, err)
			return v
		}
		all = append(all, cp)
	}
	views := make([]checkpointView, len(all))
	own := -1
	for i, cp := range all {
		if views[i] = newCheckpointView(cp, head); cp.Unit == "" {
			own = i
		}
	}
	if own < 0 {
		return v
	}
	locateSubscriptions(views, all, time.Now())
	located := views[own]
	v.InShards, v.ShardUnits, v.LagSeconds, v.lag, v.CaughtUp = located.InShards, located.ShardUnits, located.LagSeconds, located.lag, located.CaughtUp
	return v
}

// summary is the position in a few words: its phase and commit id.
func (v checkpointView) summary() string {
	if v.PositionError != "" {
		return "unreadable position"
	}
	info := v.info
	var s string
	switch {
	case subscribe.IsMemberUnit(v.Unit):
		return "a worker's membership (no position)"
	}
	switch {
	case v.InShards:
		return fmt.Sprintf("in shards (epoch %d): %d %s", info.Epoch, v.ShardUnits, plural(v.ShardUnits, "shard unit", "shard units"))
	}
	switch info.Phase {
	case "":
		return "none yet (starts at its start point)"
	case "stream", "rejoin":
		s = fmt.Sprintf("%s: %d %s", info.Phase, info.Shards, plural(info.Shards, "shard", "shards"))
		if info.Finished > 0 {
			s += fmt.Sprintf(", %d finished", info.Finished)
		}
		if info.Epoch > 0 {
			s += fmt.Sprintf(", epoch %d", info.Epoch)
		}
		if info.Parent != "" {
			s += ", split from " + info.Parent
		}
		if info.Phase == "rejoin" {
			s += " (catching up through the index)"
		}
		return s
	}
	s = info.Phase + ": " + describePosition(info.After)
	if info.Pending > 0 {
		s += fmt.Sprintf(" (+%d late)", info.Pending)
	}
	return s
}

// describePosition names an index position for people.
func describePosition(p store.Position) string {
	switch {
	case p.IsZero():
		return "beginning"
	case p.AggregateID == "" && p.Version < 0:
		return "from " + p.CommitID
	}
	return fmt.Sprintf("%s v%d", p.CommitID, p.Version)
}

func (v checkpointView) lagText() string {
	switch {
	case v.CaughtUp:
		return "0s"
	case v.LagSeconds == nil:
		return "-"
	}
	return formatDuration(v.lag)
}

// formatDuration writes d for people: 850ms, 4.2s, 3m12s, 5h4m, 3d2h.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	d = d.Round(time.Hour)
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// ago writes how long before now t was, or "never" for the zero time.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	if d := now.Sub(t); d >= 0 {
		return formatDuration(d) + " ago"
	}
	return "in " + formatDuration(t.Sub(now))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

var checkpointListCommand = &command{
	name:     "list",
	summary:  "list subscriptions' checkpoints: owner, position and lag",
	synopsis: "[--subscription NAME] [--json] [flags]",
	help: `
Lists the checkpoints of every subscription (or of --subscription), every
unit, ordered by subscription then unit:

  SUBSCRIPTION  the subscription (one registered handler)
  UNIT          the unit of its work ("-" for the whole subscription)
  OWNER         the worker process that holds it, "-" when none does; for
                a lease, how long it has left ("lease 7.0s left") or how
                long ago it expired ("expired 3m0s ago": the worker stopped
                renewing it, and any worker may take it over)
  LEASE         the fencing counter, incremented by every claim and set
  UPDATED       how long ago its position was last saved or set
  POSITION      the phase (index, catchup, stream) and where it is
  LAG           the latest commit's time less the time before which every
                commit is handled: "0s" at the head, "-" when unknown (no
                position yet, the beginning, or the commits table unread)

A leased stream subscription catches up through the index in its own unit
("-"), then hands over to one unit per stream shard ("shard-" and the
shard id); its own checkpoint then keeps the hand-over's position, which no
longer moves. Its own row then says where the subscription is: POSITION
"in shards (epoch N): K shard units", counting the shard units of that
hand-over not read to their end, and LAG the greatest of their lags (a
shard unit not started yet counts at the hand-over's position): the
subscription's lag. In phase rejoin (the shards give way to a catch-up
through the index) its LAG is theirs too. Shard units of an earlier
hand-over, left over, are listed but not counted.

The lag reads the commits table's latest commit once (--table, --index,
--buckets). In the stream phase it includes the stream's safety margin
(10 s by default), so it reads high by that much.

--json prints one JSON object a line instead, with every fact above
(lagSeconds is null when unknown; expires, the end of the owner's lease,
is null when there is no owner or no lease; inShards and shardUnits are set
on the own row of a subscription in shards, whose lagSeconds is then the
subscription's).

Exit status: 0 success (also when the latest commit cannot be read: the lag
shows "-" and a warning says why), 1 a failure or, with --subscription, a
subscription with no checkpoint.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		cf := addCheckpointFlags(fs, env, true)
		sub := fs.String("subscription", "", "list only this subscription's checkpoints (`NAME`)")
		asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
		return func(ctx context.Context, s *session) error {
			st, cps, err := cf.open(ctx, s)
			if err != nil {
				return err
			}
			var cpsList []checkpoint.Checkpoint
			corrupt := 0
			for cp, err := range cps.List(ctx, *sub) {
				if err != nil {
					if errors.Is(err, dynamocheckpoint.ErrCorruptItem) {
						corrupt++
						s.warnf("%v", err)
						continue
					}
					return cf.explain(err)
				}
				cpsList = append(cpsList, cp)
			}
			if len(cpsList) == 0 && corrupt == 0 {
				if *sub != "" {
					return cf.unknownSubscription(ctx, cps, fmt.Sprintf("no checkpoint for subscription %q", *sub), ExitFailure, "")
				}
				s.warnf("checkpoint list: no checkpoints in table %s", cf.table)
				return nil
			}
			var head headState
			if len(cpsList) > 0 {
				head = readHead(ctx, s, st)
			}
			views := make([]checkpointView, len(cpsList))
			for i, cp := range cpsList {
				views[i] = newCheckpointView(cp, head)
			}
			locateSubscriptions(views, cpsList, time.Now())
			if *asJSON {
				enc := json.NewEncoder(jsonSafeWriter{w: s.stdout})
				enc.SetEscapeHTML(false)
				for _, v := range views {
					if err := enc.Encode(v); err != nil {
						return fmt.Errorf("write stdout: %w", err)
					}
				}
			} else {
				printCheckpointTable(s.stdout, views, time.Now())
			}
			if corrupt > 0 {
				return fmt.Errorf("%d corrupt %s not listed", corrupt, plural(corrupt, "checkpoint", "checkpoints"))
			}
			return nil
		}
	},
}

func printCheckpointTable(w io.Writer, views []checkpointView, now time.Time) {
	t := newTextTable(w)
	t.row("SUBSCRIPTION", "UNIT", "OWNER", "LEASE", "UPDATED", "POSITION", "LAG")
	for _, v := range views {
		updated := "never"
		if v.UpdatedAt != nil {
			updated = ago(*v.UpdatedAt, now)
		}
		t.row(v.Subscription, dash(v.Unit), v.ownerText(now), v.Lease, updated, v.summary(), v.lagText())
	}
	t.flush()
}

// ownerText is the owner for the list: "-" for none, and for a lease how
// long it has left or how long ago it expired.
func (v checkpointView) ownerText(now time.Time) string {
	switch {
	case v.Owner == "":
		return "-"
	case v.Expires == nil:
		return v.Owner
	case v.Expires.After(now):
		return fmt.Sprintf("%s (lease %s left)", v.Owner, formatDuration(v.Expires.Sub(now)))
	}
	return fmt.Sprintf("%s (expired %s ago)", v.Owner, formatDuration(now.Sub(*v.Expires)))
}

var checkpointGetCommand = &command{
	name:       "get",
	summary:    "show everything about one subscription's checkpoint",
	synopsis:   "SUBSCRIPTION [--unit UNIT] [--json] [flags]",
	positional: true,
	help: `
Shows one checkpoint: its owner, lease and when the owner's lease expires
(a worker that stops renewing it loses the checkpoint then), when it was
last saved, its
position decoded (phase; in the index and catch-up phases the position up to
which every commit is handled, the late commits still pending and the
aggregates tracked; in the stream phase the stream and its shards), the time
before which every commit is handled, the latest commit in the commits table,
the lag, and the raw position as stored. The own checkpoint (no --unit) of a
leased stream subscription whose stream has taken over says so ("in
shards"), and its lag is the greatest of its shard units', as in
"eventstore checkpoint list".

--json prints it as one JSON object.

Exit status: 0 success, 1 a failure or no checkpoint for that subscription
(the known subscriptions are listed), 2 a usage error.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		cf := addCheckpointFlags(fs, env, true)
		unit := fs.String("unit", "", "the `UNIT` of the subscription's work (default: the whole subscription)")
		asJSON := fs.Bool("json", false, "print one JSON object")
		return func(ctx context.Context, s *session) error {
			pos, err := positionals(fs, s, "SUBSCRIPTION")
			if err != nil {
				return err
			}
			st, cps, err := cf.open(ctx, s)
			if err != nil {
				return err
			}
			key := checkpoint.Key{Subscription: pos[0], Unit: *unit}
			cp, err := cps.Load(ctx, key)
			switch {
			case errors.Is(err, checkpoint.ErrNotFound):
				return cf.unknownSubscription(ctx, cps, "no checkpoint "+key.String(), ExitFailure, "")
			case errors.Is(err, checkpoint.ErrInvalidArgument):
				return flagErrorf("%w", err)
			case err != nil:
				return cf.explain(err)
			}
			head := readHead(ctx, s, st)
			v := newCheckpointView(cp, head)
			if cp.Unit == "" && v.Epoch > 0 {
				v = locateOne(ctx, s, cps, v, head)
			}
			if head.known && !head.empty {
				h := head.pos
				v.Head = &h
			}
			v.Position = &cp.Position
			if *asJSON {
				enc := json.NewEncoder(jsonSafeWriter{w: s.stdout})
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				if err := enc.Encode(v); err != nil {
					return fmt.Errorf("write stdout: %w", err)
				}
				return nil
			}
			printCheckpoint(s.stdout, v, head, time.Now())
			return nil
		}
	},
}

func printCheckpoint(w io.Writer, v checkpointView, head headState, now time.Time) {
	t := newTextTable(w)
	row := func(k, format string, args ...any) {
		t.row(k+":", fmt.Sprintf(format, args...))
	}
	stamp := func(t time.Time) string { return t.UTC().Format(timeLayout) + " (" + ago(t, now) + ")" }
	row("subscription", "%s", v.Subscription)
	row("unit", "%s", dash(v.Unit))
	switch {
	case v.Owner == "":
		row("owner", "- (no worker holds it)")
	case v.Expires != nil && !v.Expires.After(now):
		row("owner", "%s (its lease expired: any worker may take it over)", v.Owner)
	default:
		row("owner", "%s (a worker holds it)", v.Owner)
	}
	row("lease", "%d", v.Lease)
	switch {
	case v.Owner == "":
		row("expires", "-")
	case v.Expires == nil:
		row("expires", "never (held without a lease)")
	default:
		row("expires", "%s", stamp(*v.Expires))
	}
	if v.UpdatedAt == nil {
		row("updated", "never")
	} else {
		row("updated", "%s", stamp(*v.UpdatedAt))
	}
	if v.PositionError != "" {
		row("position", "unreadable: %s", v.PositionError)
	} else {
		info := v.info
		row("phase", "%s", dash(info.Phase))
		switch info.Phase {
		case "index", "catchup":
			if info.After.IsZero() {
				row("after", "the beginning (nothing handled yet)")
			} else if info.After.AggregateID == "" && info.After.Version < 0 {
				row("after", "just before commit id %s", info.After.CommitID)
			} else {
				row("after", "commit %s version %d", info.After.CommitID, info.After.Version)
			}
			row("pending", "%d late %s before it not handled yet", info.Pending, plural(info.Pending, "commit", "commits"))
			row("aggregates", "%d tracked", info.Aggregates)
		case "stream":
			if v.InShards {
				row("in shards", "epoch %d: %d shard %s of this hand-over not read to their end tell where the subscription is; the lag is the greatest of theirs (eventstore checkpoint list)",
					info.Epoch, v.ShardUnits, plural(v.ShardUnits, "unit", "units"))
			}
			row("stream", "%s", info.StreamARN)
			row("shards", "%d with a position, %d read to their end", info.Shards, info.Finished)
			row("aggregates", "%d tracked", info.Aggregates)
		}
		if info.HandledBefore.IsZero() {
			row("handled before", "-")
		} else {
			row("handled before", "%s", stamp(info.HandledBefore))
		}
	}
	switch {
	case !head.known:
		row("head", "unknown")
	case head.empty:
		row("head", "none (the commits table is empty)")
	default:
		row("head", "commit %s version %d, at %s", head.pos.CommitID, head.pos.Version, stamp(head.at))
	}
	lag := v.lagText()
	if v.CaughtUp {
		lag += " (caught up)"
	}
	row("lag", "%s", lag)
	raw := ""
	if v.Position != nil {
		raw = *v.Position
	}
	row("position", "%s", dash(raw))
	t.flush()
}

var checkpointSetCommand = &command{
	name:       "set",
	summary:    "move a subscription's checkpoint to a start point",
	synopsis:   "SUBSCRIPTION --to beginning|now|COMMIT_ID|TIME [--force] [--unit UNIT] [--create] [flags]",
	positional: true,
	help: `
Moves a subscription's checkpoint so that, at its next start, the
subscription handles every commit from the start point on, whatever its
source (index, stream or auto):

  beginning              every commit in the table
  now                    commits appended from now on
  COMMIT_ID              from that commit id on, inclusive: 17 digits of UTC
                         time (YYYYMMDDHHmmssSSS), optionally ":aggregateId"
  TIME                   from an RFC 3339 time on, e.g. 2026-11-26T08:00:00Z

Moving back delivers commits again (handlers must be idempotent); moving
forward skips the commits in between.

A checkpoint held by a worker is not moved (exit status 4) unless --force:
the holder is then fenced, its next checkpoint save fails and it stops that
subscription; started again, it resumes from the new position. Stop the
worker first when you can. A worker whose lease has expired (it stopped
renewing it; see "eventstore checkpoint list") no longer holds it: the
checkpoint is moved without --force, and that worker is fenced all the
same. A subscription with no checkpoint is not
created (exit status 4; the known subscriptions are listed) unless --create.

Exit status: 0 moved, 1 a failure, 2 a usage error (a malformed --to),
4 refused (held, or unknown without --create).`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		cf := addCheckpointFlags(fs, env, false)
		to := fs.String("to", "", "`WHERE` to move it: beginning, now, a commit id (YYYYMMDDHHmmssSSS[:aggregateId]) or an RFC 3339\ntime (required)")
		opts := addSetFlags(fs)
		return func(ctx context.Context, s *session) error {
			pos, err := positionals(fs, s, "SUBSCRIPTION")
			if err != nil {
				return err
			}
			if strings.TrimSpace(*to) == "" {
				return flagErrorf("--to is required: %s", startForms)
			}
			start, err := subscribe.ParseStart(*to)
			if err != nil {
				return flagErrorf("--to %q: %s", *to, startForms)
			}
			return setCheckpoint(ctx, s, cf, pos[0], start, *to, opts)
		}
	},
}

var checkpointResetCommand = &command{
	name:       "reset",
	summary:    "move a subscription's checkpoint to the beginning",
	synopsis:   "SUBSCRIPTION [--force] [--unit UNIT] [--create] [flags]",
	positional: true,
	help: `
Is "checkpoint set SUBSCRIPTION --to beginning": at its next start the
subscription handles every commit in the table again. See "eventstore
checkpoint set --help" for --force, --create and the exit statuses.`,
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		cf := addCheckpointFlags(fs, env, false)
		opts := addSetFlags(fs)
		return func(ctx context.Context, s *session) error {
			pos, err := positionals(fs, s, "SUBSCRIPTION")
			if err != nil {
				return err
			}
			return setCheckpoint(ctx, s, cf, pos[0], subscribe.StartBeginning, "beginning", opts)
		}
	},
}

// startForms lists the start points --to accepts.
const startForms = "want beginning, now, a commit id (YYYYMMDDHHmmssSSS, optionally followed by :aggregateId) or an RFC 3339 time such as 2026-11-26T08:00:00Z"

// setFlags are the flags set and reset share.
type setFlags struct {
	force, create *bool
	unit          *string
}

func addSetFlags(fs *flag.FlagSet) setFlags {
	return setFlags{
		force:  fs.Bool("force", false, "move it even while a worker holds it (a lease not expired, or a claim): that worker is fenced and\nstops the subscription"),
		create: fs.Bool("create", false, "create the checkpoint if the subscription has none"),
		unit:   fs.String("unit", "", "the `UNIT` of the subscription's work (default: the whole subscription)"),
	}
}

// setCheckpoint moves the checkpoint of sub to start, refusing while a
// worker holds it (unless force) and when there is none (unless create).
// Whether a worker holds it is the store's decision (Set): a worker whose
// lease expired does not.
func setCheckpoint(ctx context.Context, s *session, cf *checkpointFlags, sub string, start subscribe.Start, to string, opts setFlags) error {
	_, cps, err := cf.open(ctx, s)
	if err != nil {
		return err
	}
	key := checkpoint.Key{Subscription: sub, Unit: *opts.unit}
	now := time.Now()
	cur, err := cps.Load(ctx, key)
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		if !*opts.create {
			return cf.unknownSubscription(ctx, cps, "refused: no checkpoint "+key.String(), ExitRefused,
				"check the name, or run again with --create to create it")
		}
	case errors.Is(err, checkpoint.ErrInvalidArgument):
		return flagErrorf("%w", err)
	case err != nil:
		return cf.explain(err)
	}
	cp, err := cps.Set(ctx, key, subscribe.CheckpointAt(start, now), *opts.force)
	var held *checkpoint.HeldError
	switch {
	case errors.As(err, &held):
		// The facts read, unless another worker took it since.
		holder := checkpoint.Checkpoint{Key: key, Owner: held.Owner, Expires: held.Expires}
		if cur.Owner == held.Owner {
			holder.Lease, holder.UpdatedAt = cur.Lease, cur.UpdatedAt
		}
		return withCode(ExitRefused, errors.New(heldMessage(key, holder, now)))
	case err != nil:
		return cf.explain(err)
	}
	switch {
	case cur.Owner == "":
	case cur.Live(now):
		s.warnf("checkpoint %s: worker %q (lease %d) is fenced: its next checkpoint save fails and it stops subscription %q; started again, it resumes from the new position",
			key, cur.Owner, cur.Lease, sub)
	default:
		s.warnf("checkpoint %s: the lease of worker %q (lease %d) had expired %s ago, so it no longer held the checkpoint; it is fenced: if it is still running, its next checkpoint save fails and it stops subscription %q",
			key, cur.Owner, cur.Lease, formatDuration(now.Sub(cur.Expires)), sub)
	}
	v := newCheckpointView(cp, headState{})
	s.warnf("checkpoint %s set to %s (%s; lease %d, no owner): the subscription resumes from there at its next start",
		key, to, v.summary(), cp.Lease)
	return nil
}

// heldMessage explains a refusal to move a held checkpoint, and what
// --force would do.
func heldMessage(key checkpoint.Key, cp checkpoint.Checkpoint, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "refused: checkpoint %s is held by worker %q", key, cp.Owner)
	var facts []string
	if cp.Lease > 0 {
		f := fmt.Sprintf("lease %d, position last saved %s", cp.Lease, ago(cp.UpdatedAt, now))
		if !cp.UpdatedAt.IsZero() {
			f += ", at " + cp.UpdatedAt.UTC().Format(timeLayout)
		}
		facts = append(facts, f)
	}
	if !cp.Expires.IsZero() {
		facts = append(facts, fmt.Sprintf("its lease runs until %s, %s, unless it renews it", cp.Expires.UTC().Format(timeLayout), ago(cp.Expires, now)))
	}
	if len(facts) > 0 {
		b.WriteString(" (" + strings.Join(facts, "; ") + ")")
	}
	fmt.Fprintf(&b, `.
Stop that worker first, or run again with --force: the worker is fenced, its next checkpoint save fails and it stops subscription %q; started again, it resumes from the new position.`, key.Subscription)
	if cp.Expires.IsZero() {
		b.WriteString("\nIf that worker is not running any more (it stopped without releasing the checkpoint), --force is safe.")
	} else {
		fmt.Fprintf(&b, "\nIf that worker is not running any more, its lease runs out at %s: from then on the checkpoint is moved without --force.",
			cp.Expires.UTC().Format(timeLayout))
	}
	return b.String()
}

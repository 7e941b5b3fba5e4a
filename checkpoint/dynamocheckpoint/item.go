package dynamocheckpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dynamodb-event-store/eventstore/checkpoint"
	"github.com/dynamodb-event-store/eventstore/store"
)

// Item attribute names.
const (
	AttrPK = "pk"
	AttrSK = "sk"

	// Checkpoint items. Expires is Unix milliseconds, present only while
	// the key is held under a lease (Take, Renew).
	AttrPosition  = "position"
	AttrOwner     = "owner"
	AttrLease     = "lease"
	AttrUpdatedAt = "updatedAt"
	AttrExpires   = "expires"

	// Parked commit items: the commit's own attributes, as in the commits
	// table, then the parking facts.
	AttrAggregateID = store.AttrAggregateID
	AttrVersion     = store.AttrVersion
	AttrCommitID    = store.AttrCommitID
	AttrCommittedAt = store.AttrCommittedAt
	AttrEvents      = store.AttrEvents
	AttrReason      = "reason"
	AttrAttempts    = "attempts"
	AttrParkedAt    = "parkedAt"

	// Request items: the request's facts; the aggregate id is the sort
	// key. Result and CompletedAt are absent until the request is done;
	// Result stays absent when empty.
	AttrRequestID   = "requestId"
	AttrKind        = "kind"
	AttrRequestedAt = "requestedAt"
	AttrDone        = "done"
	AttrResult      = "result"
	AttrHandled     = "handled"
	AttrCompletedAt = "completedAt"
)

// Key prefixes.
const (
	checkpointPrefix = "cp#"
	unitPrefix       = "u#"
	parkedPrefix     = "park#"
	requestPrefix    = "req#"
)

// DynamoDB limits checked before writing.
const (
	// MaxItemBytes is DynamoDB's item size limit: 400 KB.
	MaxItemBytes = 400 * 1024
	// MaxSortKeyBytes is DynamoDB's limit on a sort key value.
	MaxSortKeyBytes = 1024
)

// ErrCorruptItem: an item read from the table does not decode. Returned as
// a *DecodeError.
var ErrCorruptItem = errors.New("checkpoint: corrupt item")

// DecodeError reports an item in the checkpoints table that is not a
// well-formed checkpoint or parked commit, for example one written by hand.
// It names the item by its key and matches ErrCorruptItem.
type DecodeError struct {
	// PK and SK are the item's key.
	PK, SK string
	// Attribute names the attribute that failed to decode.
	Attribute string
	Err       error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("checkpoint: corrupt item pk=%q sk=%q: attribute %q: %v", e.PK, e.SK, e.Attribute, e.Err)
}

// Unwrap returns ErrCorruptItem and the underlying cause.
func (e *DecodeError) Unwrap() []error { return []error{ErrCorruptItem, e.Err} }

func checkpointKey(k checkpoint.Key) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: checkpointPrefix + k.Subscription},
		AttrSK: &types.AttributeValueMemberS{Value: unitPrefix + k.Unit},
	}
}

// parkedAggregatePrefix returns the sort key prefix of an aggregate's parked
// commits: the id with 0x00 and 0x01 escaped as 0x01 0x02 and 0x01 0x03,
// then the terminator 0x01 0x01, which sorts below any continuation of the
// id. The result is valid UTF-8 if id is, and orders as id does.
func parkedAggregatePrefix(id string) string {
	var b strings.Builder
	b.Grow(len(id) + 2)
	for i := 0; i < len(id); i++ {
		switch c := id[i]; c {
		case 0x00:
			b.WriteString("\x01\x02")
		case 0x01:
			b.WriteString("\x01\x03")
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString("\x01\x01")
	return b.String()
}

// parkedSortKey returns the sort key of a parked commit: the aggregate's
// prefix, then the version as a letter counting its digits ('a' for 1) and
// its digits, which sorts numerically.
func parkedSortKey(aggregateID string, version int64) string {
	v := strconv.FormatInt(version, 10)
	return parkedAggregatePrefix(aggregateID) + string(rune('a'+len(v)-1)) + v
}

func parkedKey(subscription, aggregateID string, version int64) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: parkedPrefix + subscription},
		AttrSK: &types.AttributeValueMemberS{Value: parkedSortKey(aggregateID, version)},
	}
}

func encodeParked(p checkpoint.Parked) map[string]types.AttributeValue {
	item := parkedKey(p.Subscription, p.Commit.AggregateID, p.Commit.Version)
	item[AttrAggregateID] = &types.AttributeValueMemberS{Value: p.Commit.AggregateID}
	item[AttrVersion] = number(p.Commit.Version)
	item[AttrCommitID] = &types.AttributeValueMemberS{Value: p.Commit.CommitID}
	item[AttrCommittedAt] = number(p.Commit.CommittedAt)
	item[AttrEvents] = &types.AttributeValueMemberS{Value: string(p.Commit.Events)}
	item[AttrReason] = &types.AttributeValueMemberS{Value: p.Reason}
	item[AttrAttempts] = number(int64(p.Attempts))
	item[AttrParkedAt] = number(p.ParkedAt.UnixMilli())
	return item
}

func number(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// itemSize returns the size DynamoDB counts for an item: names and values,
// numbers at about one byte per two significant digits plus one.
func itemSize(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			n += (len(strings.TrimPrefix(v.Value, "-"))+1)/2 + 1
		}
	}
	return n
}

// decoder reads attributes of one item and records the first failure as a
// *DecodeError naming the item's key.
type decoder struct {
	item map[string]types.AttributeValue
	err  error
}

func (d *decoder) fail(attr string, err error) {
	if d.err == nil {
		pk, _ := d.item[AttrPK].(*types.AttributeValueMemberS)
		sk, _ := d.item[AttrSK].(*types.AttributeValueMemberS)
		e := &DecodeError{Attribute: attr, Err: err}
		if pk != nil {
			e.PK = pk.Value
		}
		if sk != nil {
			e.SK = sk.Value
		}
		d.err = e
	}
}

// str returns a string attribute; a missing one is "" unless required.
func (d *decoder) str(name string, required bool) string {
	switch v := d.item[name].(type) {
	case *types.AttributeValueMemberS:
		return v.Value
	case nil:
		if required {
			d.fail(name, errors.New("missing"))
		}
	default:
		d.fail(name, fmt.Errorf("is a %s, want a string", typeName(v)))
	}
	return ""
}

// bool returns a boolean attribute; a missing one is false.
func (d *decoder) bool(name string) bool {
	switch v := d.item[name].(type) {
	case *types.AttributeValueMemberBOOL:
		return v.Value
	case nil:
	default:
		d.fail(name, fmt.Errorf("is a %s, want a boolean", typeName(v)))
	}
	return false
}

// int returns an integer attribute; a missing one is 0 unless required.
func (d *decoder) int(name string, required bool) int64 {
	switch v := d.item[name].(type) {
	case *types.AttributeValueMemberN:
		n, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil {
			d.fail(name, fmt.Errorf("%s is not an integer", v.Value))
		}
		return n
	case nil:
		if required {
			d.fail(name, errors.New("missing"))
		}
	default:
		d.fail(name, fmt.Errorf("is a %s, want a number", typeName(v)))
	}
	return 0
}

// millis returns a Unix-millisecond attribute as a time, zero when missing
// and not required.
func (d *decoder) millis(name string, required bool) time.Time {
	if _, ok := d.item[name]; !ok && !required {
		return time.Time{}
	}
	return time.UnixMilli(d.int(name, required)).UTC()
}

func typeName(v types.AttributeValue) string {
	switch v.(type) {
	case *types.AttributeValueMemberS:
		return "string (S)"
	case *types.AttributeValueMemberN:
		return "number (N)"
	case *types.AttributeValueMemberB:
		return "binary (B)"
	case *types.AttributeValueMemberBOOL:
		return "boolean (BOOL)"
	case *types.AttributeValueMemberNULL:
		return "null (NULL)"
	case *types.AttributeValueMemberM:
		return "map (M)"
	case *types.AttributeValueMemberL:
		return "list (L)"
	case *types.AttributeValueMemberSS:
		return "string set (SS)"
	case *types.AttributeValueMemberNS:
		return "number set (NS)"
	case *types.AttributeValueMemberBS:
		return "binary set (BS)"
	}
	return fmt.Sprintf("%T", v)
}

// decodeCheckpoint turns a checkpoint item into a Checkpoint, or a
// *DecodeError naming its key.
func decodeCheckpoint(item map[string]types.AttributeValue) (checkpoint.Checkpoint, error) {
	d := decoder{item: item}
	var cp checkpoint.Checkpoint
	pk, sk := d.str(AttrPK, true), d.str(AttrSK, true)
	if d.err == nil {
		sub, ok := strings.CutPrefix(pk, checkpointPrefix)
		if !ok || sub == "" {
			d.fail(AttrPK, fmt.Errorf("want %q and a subscription", checkpointPrefix))
		}
		unit, ok := strings.CutPrefix(sk, unitPrefix)
		if !ok {
			d.fail(AttrSK, fmt.Errorf("want %q and a unit", unitPrefix))
		}
		cp.Key = checkpoint.Key{Subscription: sub, Unit: unit}
	}
	cp.Position = d.str(AttrPosition, false)
	cp.Owner = d.str(AttrOwner, false)
	cp.Lease = d.int(AttrLease, true)
	cp.UpdatedAt = d.millis(AttrUpdatedAt, false)
	cp.Expires = d.millis(AttrExpires, false)
	if d.err != nil {
		return checkpoint.Checkpoint{}, d.err
	}
	return cp, nil
}

// decodeParked turns a parked commit item into a Parked, or a *DecodeError
// naming its key.
func decodeParked(item map[string]types.AttributeValue) (checkpoint.Parked, error) {
	d := decoder{item: item}
	var p checkpoint.Parked
	pk := d.str(AttrPK, true)
	if d.err == nil {
		sub, ok := strings.CutPrefix(pk, parkedPrefix)
		if !ok || sub == "" {
			d.fail(AttrPK, fmt.Errorf("want %q and a subscription", parkedPrefix))
		}
		p.Subscription = sub
	}
	p.Commit.AggregateID = d.str(AttrAggregateID, true)
	p.Commit.Version = d.int(AttrVersion, true)
	p.Commit.CommitID = d.str(AttrCommitID, false)
	p.Commit.CommittedAt = d.int(AttrCommittedAt, false)
	if events := d.str(AttrEvents, false); events != "" {
		p.Commit.Events = json.RawMessage(events)
	}
	p.Reason = d.str(AttrReason, false)
	p.Attempts = int(d.int(AttrAttempts, false))
	p.ParkedAt = d.millis(AttrParkedAt, true)
	if d.err == nil {
		if p.Commit.AggregateID == "" {
			d.fail(AttrAggregateID, errors.New("empty"))
		} else if p.Commit.Version < 0 {
			d.fail(AttrVersion, fmt.Errorf("negative version %d", p.Commit.Version))
		}
	}
	if d.err != nil {
		return checkpoint.Parked{}, d.err
	}
	return p, nil
}

func requestKey(subscription, aggregateID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: requestPrefix + subscription},
		AttrSK: &types.AttributeValueMemberS{Value: aggregateID},
	}
}

// encodeRequest returns the item of a new request (not done).
func encodeRequest(r checkpoint.Request) map[string]types.AttributeValue {
	item := requestKey(r.Subscription, r.AggregateID)
	item[AttrRequestID] = &types.AttributeValueMemberS{Value: r.ID}
	item[AttrKind] = &types.AttributeValueMemberS{Value: string(r.Kind)}
	item[AttrRequestedAt] = number(r.RequestedAt.UnixMilli())
	item[AttrDone] = &types.AttributeValueMemberBOOL{Value: false}
	item[AttrHandled] = number(0)
	return item
}

// decodeRequest turns a request item into a Request, or a *DecodeError
// naming its key. A kind other than the two is decoded as it is, for the
// worker to report.
func decodeRequest(item map[string]types.AttributeValue) (checkpoint.Request, error) {
	d := decoder{item: item}
	var r checkpoint.Request
	pk, sk := d.str(AttrPK, true), d.str(AttrSK, true)
	if d.err == nil {
		sub, ok := strings.CutPrefix(pk, requestPrefix)
		if !ok || sub == "" {
			d.fail(AttrPK, fmt.Errorf("want %q and a subscription", requestPrefix))
		}
		r.Subscription, r.AggregateID = sub, sk
	}
	r.ID = d.str(AttrRequestID, true)
	r.Kind = checkpoint.RequestKind(d.str(AttrKind, true))
	r.RequestedAt = d.millis(AttrRequestedAt, true)
	r.Done = d.bool(AttrDone)
	r.Result = d.str(AttrResult, false)
	r.Handled = int(d.int(AttrHandled, false))
	r.CompletedAt = d.millis(AttrCompletedAt, false)
	if d.err == nil && r.ID == "" {
		d.fail(AttrRequestID, errors.New("empty"))
	}
	if d.err != nil {
		return checkpoint.Request{}, d.err
	}
	return r, nil
}

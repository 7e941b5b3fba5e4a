package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// validate checks a commit before any write. index is its place in an
// AppendAll call, or -1.
func validate(c Commit, index int) error {
	bad := func(reason error, detail string) error {
		return &InvalidCommitError{Index: index, AggregateID: c.AggregateID, Version: c.Version, Reason: reason, Detail: detail}
	}
	switch {
	case c.AggregateID == "":
		return bad(ErrEmptyAggregateID, "")
	case len(c.AggregateID) > MaxAggregateIDBytes:
		return bad(ErrAggregateIDTooLong, fmt.Sprintf("%d bytes, limit %d", len(c.AggregateID), MaxAggregateIDBytes))
	case !utf8.ValidString(c.AggregateID):
		return bad(ErrAggregateIDNotUTF8, "")
	case c.Version < 0:
		return bad(ErrNegativeVersion, "")
	case c.Version > MaxVersion:
		return bad(ErrVersionTooLarge, fmt.Sprintf("%d is above %d (2^53-1), the largest version JavaScript readers read exactly", c.Version, MaxVersion))
	}
	if err := checkEvents(c.Events); err != nil {
		if errors.Is(err, ErrNoEvents) {
			return bad(ErrNoEvents, "")
		}
		return bad(ErrEventsNotJSON, err.Error())
	}
	return nil
}

// checkEvents reports whether events is a JSON array with at least one
// element.
func checkEvents(events []byte) error {
	i := skipSpace(events, 0)
	if i == len(events) {
		return ErrNoEvents
	}
	if events[i] != '[' {
		return fmt.Errorf("%w: starts with %q", ErrEventsNotJSON, events[i])
	}
	if !json.Valid(events) {
		var v any
		err := json.Unmarshal(events, &v) // for the syntax error's text
		return fmt.Errorf("%w: %v", ErrEventsNotJSON, err)
	}
	if j := skipSpace(events, i+1); j < len(events) && events[j] == ']' {
		return ErrNoEvents
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// newToken returns a random commit token.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}

// encode returns the commit's item in the original package's layout, plus
// the commit token.
func encode(c Commit, bucket, token string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrAggregateID: &types.AttributeValueMemberS{Value: c.AggregateID},
		AttrVersion:     &types.AttributeValueMemberN{Value: strconv.FormatInt(c.Version, 10)},
		AttrCommitID:    &types.AttributeValueMemberS{Value: c.CommitID},
		AttrCommittedAt: &types.AttributeValueMemberN{Value: strconv.FormatInt(c.CommittedAt, 10)},
		AttrEvents:      &types.AttributeValueMemberS{Value: string(c.Events)},
		AttrActive:      &types.AttributeValueMemberS{Value: bucket},
		AttrCommitToken: &types.AttributeValueMemberS{Value: token},
	}
}

// itemSize returns the size DynamoDB counts for the commit's item: the
// attribute names' and values' lengths, numbers at one byte per two
// significant digits plus one.
func itemSize(c Commit, bucket, token string) int {
	const names = len(AttrAggregateID) + len(AttrVersion) + len(AttrCommitID) + len(AttrCommittedAt) +
		len(AttrEvents) + len(AttrActive) + len(AttrCommitToken)
	return names + len(c.AggregateID) + numberSize(c.Version) + len(c.CommitID) + numberSize(c.CommittedAt) +
		len(c.Events) + len(bucket) + len(token)
}

func numberSize(n int64) int {
	digits := len(strconv.FormatInt(n, 10))
	if n < 0 {
		digits--
	}
	return (digits+1)/2 + 1
}

func stringAttr(item map[string]types.AttributeValue, name string) (string, bool) {
	v, ok := item[name].(*types.AttributeValueMemberS)
	if !ok {
		return "", false
	}
	return v.Value, true
}

func numberAttr(item map[string]types.AttributeValue, name string) (string, bool) {
	v, ok := item[name].(*types.AttributeValueMemberN)
	if !ok {
		return "", false
	}
	return v.Value, true
}

// DecodeItem turns a commits-table item (as GetItem, Query or a stream
// record's NEW_IMAGE carries it) into a Commit, judging its commit id's time
// against time.Now (see DecodeItemAt).
func DecodeItem(item map[string]types.AttributeValue) (Commit, error) {
	return DecodeItemAt(item, time.Now())
}

// DecodeItemAt turns a commits-table item into a Commit. It is the one check
// of what a well-formed commit is, used by Query, Scan and every subscription
// source: an item that is not one returns a *DecodeError (ErrCorruptCommit)
// naming its key and its Kind, with what could be read of it in
// DecodeError.Commit. A commit id whose time lies more than
// MaxCommitIDAhead after now is corrupt (KindFutureCommitID); a zero now
// skips that check. See docs/items.md.
func DecodeItemAt(item map[string]types.AttributeValue, now time.Time) (Commit, error) {
	return decode(item, now)
}

// decode turns an item into a Commit, or a *DecodeError naming its key.
func decode(item map[string]types.AttributeValue, now time.Time) (Commit, error) {
	var c Commit
	aggregateID, _ := stringAttr(item, AttrAggregateID)
	version, _ := numberAttr(item, AttrVersion)
	commitID, _ := stringAttr(item, AttrCommitID)
	c.AggregateID, c.CommitID = aggregateID, commitID
	if v, err := strconv.ParseInt(version, 10, 64); err == nil {
		c.Version = v
	}
	if at, ok := numberAttr(item, AttrCommittedAt); ok {
		c.CommittedAt, _ = strconv.ParseInt(at, 10, 64)
	}
	events, eventsOK := stringAttr(item, AttrEvents)
	if eventsOK {
		c.Events = json.RawMessage(events)
	}
	fail := func(kind CorruptKind, attr string, err error) (Commit, error) {
		return Commit{}, &DecodeError{AggregateID: aggregateID, Version: version, CommitID: commitID, Attribute: attr, Kind: kind, Err: err, Commit: c}
	}
	if aggregateID == "" {
		return fail(KindBadAggregateID, AttrAggregateID, errors.New("missing or not a non-empty string"))
	}
	if v, err := strconv.ParseInt(version, 10, 64); err != nil || v < 0 || v > MaxVersion {
		return fail(KindBadVersion, AttrVersion, fmt.Errorf("%q is not an integer from 0 to %d", version, MaxVersion))
	}
	if commitID == "" {
		return fail(KindMissingCommitID, AttrCommitID, errors.New("missing or not a non-empty string"))
	}
	at, err := ParseCommitIDTime(commitID)
	if err != nil || len(commitID) == commitIDLayoutLen || commitID[commitIDLayoutLen] != ':' {
		return fail(KindMalformedCommitID, AttrCommitID, errors.New("want YYYYMMDDHHmmssSSS:aggregateId"))
	}
	if owner := commitID[commitIDLayoutLen+1:]; owner != aggregateID {
		return fail(KindForeignCommitID, AttrCommitID, fmt.Errorf("names aggregate %q, not the item's own", owner))
	}
	if !now.IsZero() && at.Sub(now) > MaxCommitIDAhead {
		return fail(KindFutureCommitID, AttrCommitID, fmt.Errorf("its time %s is %v after the reader's clock; the bound is %v",
			at.Format(time.RFC3339Nano), at.Sub(now).Truncate(time.Second), MaxCommitIDAhead))
	}
	at2, ok := numberAttr(item, AttrCommittedAt)
	if !ok {
		return fail(KindBadCommittedAt, AttrCommittedAt, errors.New("missing or not a number"))
	}
	if _, err := strconv.ParseInt(at2, 10, 64); err != nil {
		return fail(KindBadCommittedAt, AttrCommittedAt, fmt.Errorf("%q is not an integer", at2))
	}
	if !eventsOK {
		return fail(KindEventsNotArray, AttrEvents, errors.New("missing or not a string"))
	}
	if err := checkEvents(c.Events); err != nil && !errors.Is(err, ErrNoEvents) {
		return fail(KindEventsNotArray, AttrEvents, err)
	}
	return c, nil
}

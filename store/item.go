package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
// record's NEW_IMAGE carries it) into a Commit. An item that is not a
// well-formed commit returns a *DecodeError naming its key (ErrCorruptCommit).
func DecodeItem(item map[string]types.AttributeValue) (Commit, error) { return decode(item) }

// decode turns an item into a Commit, or a *DecodeError naming its key.
func decode(item map[string]types.AttributeValue) (Commit, error) {
	var c Commit
	aggregateID, _ := stringAttr(item, AttrAggregateID)
	version, _ := numberAttr(item, AttrVersion)
	commitID, _ := stringAttr(item, AttrCommitID)
	fail := func(attr string, err error) (Commit, error) {
		return Commit{}, &DecodeError{AggregateID: aggregateID, Version: version, CommitID: commitID, Attribute: attr, Err: err}
	}
	if aggregateID == "" {
		return fail(AttrAggregateID, errors.New("missing or not a non-empty string"))
	}
	c.AggregateID = aggregateID
	v, err := strconv.ParseInt(version, 10, 64)
	if err != nil || v < 0 {
		return fail(AttrVersion, fmt.Errorf("%q is not a non-negative integer", version))
	}
	c.Version = v
	if commitID == "" {
		return fail(AttrCommitID, errors.New("missing or not a non-empty string"))
	}
	c.CommitID = commitID
	at, ok := numberAttr(item, AttrCommittedAt)
	if !ok {
		return fail(AttrCommittedAt, errors.New("missing or not a number"))
	}
	if c.CommittedAt, err = strconv.ParseInt(at, 10, 64); err != nil {
		return fail(AttrCommittedAt, fmt.Errorf("%q is not an integer", at))
	}
	events, ok := stringAttr(item, AttrEvents)
	if !ok {
		return fail(AttrEvents, errors.New("missing or not a string"))
	}
	c.Events = json.RawMessage(events)
	if err := checkEvents(c.Events); err != nil && !errors.Is(err, ErrNoEvents) {
		return fail(AttrEvents, err)
	}
	return c, nil
}

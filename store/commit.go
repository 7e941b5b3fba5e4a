package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Commit is one atomic group of events appended to one aggregate at one
// version. Its JSON form is the commit shape of the original
// dynamodb-event-store package:
//
//	{"commitId":"20000101000000000:a1","committedAt":946684800000,"aggregateId":"a1","version":0,"events":[…]}
type Commit struct {
	// CommitID is "YYYYMMDDHHmmssSSS:aggregateId", the UTC wall-clock
	// instant of the append to the millisecond, a colon and the aggregate id.
	// It is assigned by the store; a value set by the caller of Append is
	// ignored.
	CommitID string `json:"commitId"`
	// CommittedAt is the same instant as CommitID, in Unix milliseconds.
	// It is assigned by the store; a value set by the caller is ignored.
	CommittedAt int64 `json:"committedAt"`
	// AggregateID names the aggregate (the table's partition key). It must
	// be non-empty valid UTF-8 of at most MaxAggregateIDBytes bytes.
	AggregateID string `json:"aggregateId"`
	// Version is the commit's version within its aggregate: 0, 1, 2, …
	// At most one commit exists per (AggregateID, Version).
	Version int64 `json:"version"`
	// Events is the commit's events as a JSON array of any JSON values, with
	// at least one element. It is stored and read back exactly as given;
	// JavaScript readers (the original package) parse it with JSON.parse,
	// so integers beyond 2^53, 1e400 and -0 read differently there (see the
	// package documentation).
	Events json.RawMessage `json:"events"`
}

// Time returns CommittedAt as a time.Time in UTC.
func (c Commit) Time() time.Time { return time.UnixMilli(c.CommittedAt).UTC() }

// Position returns the commit's place in the global commit order.
func (c Commit) Position() Position {
	return Position{CommitID: c.CommitID, AggregateID: c.AggregateID, Version: c.Version}
}

// DecodeEvents unmarshals the commit's events (a JSON array) into v, which is
// typically a pointer to a slice.
func (c Commit) DecodeEvents(v any) error {
	if err := json.Unmarshal(c.Events, v); err != nil {
		return fmt.Errorf("store: decode events of %q version %d: %w", c.AggregateID, c.Version, err)
	}
	return nil
}

// MarshalEvents encodes events as the JSON array a Commit carries.
func MarshalEvents(events ...any) (json.RawMessage, error) {
	if events == nil {
		events = []any{}
	}
	b, err := json.Marshal(events)
	if err != nil {
		return nil, fmt.Errorf("store: marshal events: %w", err)
	}
	return b, nil
}

// Position is a place in the global commit order, which is the order of the
// commit-order index: CommitID, then AggregateID, then Version. A CommitID
// alone is ambiguous, since one aggregate's commits appended within the same
// millisecond share it.
//
// The zero Position lies before every commit.
//
// Its text form, "commitId#version" or "start" (String, ParsePosition,
// MarshalText), suits flags and logs; its JSON form is an object with every
// field (MarshalJSON), which checkpoints store.
type Position struct {
	CommitID    string `json:"commitId"`
	AggregateID string `json:"aggregateId"`
	Version     int64  `json:"version"`
}

// FromCommitID returns the Position just before every commit whose CommitID
// is commitID or later: scanning after it includes commitID itself, as the
// original package's scan does.
func FromCommitID(commitID string) Position {
	return Position{CommitID: commitID, Version: -1}
}

// IsZero reports whether p is the zero Position, before every commit.
func (p Position) IsZero() bool { return p == Position{} }

// Compare returns -1, 0 or +1 as p sorts before, equal to, or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.CommitID < q.CommitID:
		return -1
	case p.CommitID > q.CommitID:
		return 1
	case p.AggregateID < q.AggregateID:
		return -1
	case p.AggregateID > q.AggregateID:
		return 1
	case p.Version < q.Version:
		return -1
	case p.Version > q.Version:
		return 1
	}
	return 0
}

// String returns "commitId#version", or "start" for the zero Position.
// ParsePosition reads it back; MarshalText writes the same form.
func (p Position) String() string {
	if p.IsZero() {
		return "start"
	}
	return p.CommitID + "#" + strconv.FormatInt(p.Version, 10)
}

// ParsePosition returns the Position that s names in the form String
// writes: "start" for the zero Position, "commitId#version" otherwise. The
// commit id is everything before the last '#' (an aggregate id may contain
// '#'); the aggregate id is the part of the commit id after its first colon
// (one may contain ':'). The version is a decimal integer from 0, written as
// String writes it (no sign, no leading zeros), or -1: "commitId#-1" is what
// String writes for FromCommitID(commitId), and reads back as it.
//
// ParsePosition(p.String()) == p for the zero Position, every FromCommitID
// position, and the Position of every commit whose commit id is
// "timestamp:aggregateId" with its own aggregate id, as both this package
// and the original write them.
//
// Malformed text (no '#', an empty commit id, a version that is not an
// integer or below -1, a commit id with no aggregate id after a colon, text
// that is not UTF-8) returns an error matching ErrInvalidArgument.
func ParsePosition(s string) (Position, error) {
	if s == "start" {
		return Position{}, nil
	}
	bad := func(why string) (Position, error) {
		return Position{}, fmt.Errorf(`%w: position %q: %s; want "start" or commitId#version`, ErrInvalidArgument, s, why)
	}
	if !utf8.ValidString(s) {
		return bad("not valid UTF-8")
	}
	i := strings.LastIndexByte(s, '#')
	if i < 0 {
		return bad("no '#'")
	}
	commitID, vs := s[:i], s[i+1:]
	v, err := strconv.ParseInt(vs, 10, 64)
	switch {
	case err != nil || strconv.FormatInt(v, 10) != vs:
		return bad(fmt.Sprintf("version %q is not an integer", vs))
	case commitID == "":
		return bad("empty commit id")
	case v == -1:
		return FromCommitID(commitID), nil
	case v < -1:
		return bad(fmt.Sprintf("version %d is below -1", v))
	}
	_, aggregateID, ok := strings.Cut(commitID, ":")
	if !ok || aggregateID == "" {
		return bad(fmt.Sprintf("commit id %q has no aggregate id after a colon", commitID))
	}
	return Position{CommitID: commitID, AggregateID: aggregateID, Version: v}, nil
}

// MarshalText returns p.String(), the form ParsePosition reads. A Position
// that text would not read back exactly returns an error matching
// ErrInvalidArgument instead: one whose AggregateID is not the part of its
// CommitID after the first colon (a commit with a malformed commit id), or
// whose Version is below 0 other than FromCommitID's. Such positions keep
// every field in JSON (MarshalJSON).
func (p Position) MarshalText() ([]byte, error) {
	s := p.String()
	if q, err := ParsePosition(s); err != nil || q != p {
		return nil, fmt.Errorf("%w: position (commitId %q, aggregateId %q, version %d) has no text form: "+
			"want the aggregate id after the commit id's first colon and a version from 0, or FromCommitID's",
			ErrInvalidArgument, p.CommitID, p.AggregateID, p.Version)
	}
	return []byte(s), nil
}

// UnmarshalText sets p to ParsePosition(string(text)); on error p is left
// unchanged.
func (p *Position) UnmarshalText(text []byte) error {
	q, err := ParsePosition(string(text))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// jsonPosition is Position without its methods: its JSON object form.
type jsonPosition Position

// MarshalJSON returns p as the JSON object
// {"commitId":…,"aggregateId":…,"version":…}, every field as it is. (Without
// this method encoding/json would use MarshalText, which cannot carry every
// Position.)
func (p Position) MarshalJSON() ([]byte, error) {
	return json.Marshal(jsonPosition(p))
}

// UnmarshalJSON reads the object MarshalJSON writes, or a JSON string in the
// text form (see ParsePosition).
func (p *Position) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("store: position: %w", err)
		}
		return p.UnmarshalText([]byte(s))
	}
	return json.Unmarshal(b, (*jsonPosition)(p))
}

// commitIDLayoutLen is the length of the timestamp part of a commit id.
const commitIDLayoutLen = 17

// FormatCommitID returns the commit id for an aggregate at a Unix
// millisecond instant: "YYYYMMDDHHmmssSSS:aggregateId" in UTC.
func FormatCommitID(unixMilli int64, aggregateID string) string {
	t := time.UnixMilli(unixMilli).UTC()
	b := make([]byte, 0, commitIDLayoutLen+1+len(aggregateID))
	b = appendDigits(b, t.Year(), 4)
	b = appendDigits(b, int(t.Month()), 2)
	b = appendDigits(b, t.Day(), 2)
	b = appendDigits(b, t.Hour(), 2)
	b = appendDigits(b, t.Minute(), 2)
	b = appendDigits(b, t.Second(), 2)
	b = appendDigits(b, t.Nanosecond()/int(time.Millisecond), 3)
	b = append(b, ':')
	b = append(b, aggregateID...)
	return string(b)
}

func appendDigits(b []byte, v, width int) []byte {
	var tmp [8]byte
	for i := width - 1; i >= 0; i-- {
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, tmp[:width]...)
}

// ParseCommitIDTime returns the instant encoded in a commit id's first 17
// digits. It returns an error when commitID does not start with them.
func ParseCommitIDTime(commitID string) (time.Time, error) {
	if len(commitID) < commitIDLayoutLen {
		return time.Time{}, fmt.Errorf("store: commit id %q: want YYYYMMDDHHmmssSSS[:aggregateId]", commitID)
	}
	for i := 0; i < commitIDLayoutLen; i++ {
		if commitID[i] < '0' || commitID[i] > '9' {
			return time.Time{}, fmt.Errorf("store: commit id %q: want YYYYMMDDHHmmssSSS[:aggregateId]", commitID)
		}
	}
	t, err := time.Parse("20060102150405.000", commitID[:14]+"."+commitID[14:commitIDLayoutLen])
	if err != nil {
		return time.Time{}, fmt.Errorf("store: commit id %q: %w", commitID, err)
	}
	return t, nil
}

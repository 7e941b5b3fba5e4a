package webhook

import "time"

// SetClock replaces the clock a Retry-After date is read against.
func SetClock(h *Handler, now func() time.Time) { h.now = now }

// TimeoutOf returns the per-request timeout h applies.
func TimeoutOf(h *Handler) time.Duration { return h.timeout }

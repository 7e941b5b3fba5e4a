package cli

import (
	"context"
	"errors"
	"flag"
)

var localCommand = &command{
	name:    "local",
	summary: "not built yet",
	setup: func(fs *flag.FlagSet, env func(string) string) action {
		return func(ctx context.Context, s *session) error { return errors.New("not built yet") }
	},
}

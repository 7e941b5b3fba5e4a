package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/dynamodb-event-store/eventstore/internal/flaghelp"
)

// Exit statuses of Run.
const (
	ExitOK          = 0   // success
	ExitFailure     = 1   // AWS errors, missing or non-conforming table, corrupt items read
	ExitUsage       = 2   // unknown command, bad flag or environment value, bad input line
	ExitConflict    = 3   // version conflict on append
	ExitRefused     = 4   // refused: checkpoint set/reset of a held checkpoint or of an unknown subscription, a discard or a table delete without --yes
	ExitInterrupted = 130 // stopped by a signal (the context given to Run was cancelled)
)

// prog prefixes every message on stderr.
const prog = "eventstore"

// command is one entry of the command table: a leaf with a setup, or a group
// with subcommands.
type command struct {
	name    string
	summary string // one line, for command lists
	// synopsis follows "eventstore <name>" in the usage line. Default
	// "[flags]".
	synopsis string
	help     string // paragraphs for --help, after the usage line
	// positional lets the command take arguments after its flags (in
	// session.args); without it they are a usage error.
	positional bool
	// setup defines the command's flags on fs and returns what runs once
	// they are parsed. env returns an environment variable's value ("" when
	// unset), for flag defaults.
	setup func(fs *flag.FlagSet, env func(string) string) action
	subs  []*command
}

// An action runs a command after its flags are parsed. It returns nil, or an
// error whose exit status is that of an *exitError in its chain, else 1.
type action func(ctx context.Context, s *session) error

// session is what an action reads from and writes to.
type session struct {
	stdin  io.Reader
	stdout *bufio.Writer // flushed by Run after the action returns
	stderr io.Writer     // safe for concurrent use
	args   []string      // positional arguments left after the flags
}

// warnf writes a message to stderr, prefixed "eventstore: ".
//
// Control characters other than newlines and tabs are escaped
// (escapeMessage): a message may quote data, such as a reason a handler
// gave, that would otherwise drive the terminal.
func (s *session) warnf(format string, args ...any) {
	fmt.Fprint(s.stderr, escapeMessage(fmt.Sprintf(prog+": "+format, args...))+"\n")
}

// commands is the command table, in the order of the command list.
var commands = []*command{
	demoCommand,
	{name: "table", summary: "create, delete or describe the commits table", subs: []*command{
		tableCreateCommand,
		tableDeleteCommand,
		tableDescribeCommand,
	}},
	appendCommand,
	queryCommand,
	scanCommand,
	tailCommand,
	workerCommand,
	{name: "checkpoint", summary: "see and move subscriptions' checkpoints; create their table", subs: checkpointCommands},
	{name: "parked", summary: "list, replay or discard parked commits", subs: parkedCommands},
	localCommand,
}

// exitError carries an exit status other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode returns err with exit status code.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// Run runs the eventstore command line args (without the program name),
// reading stdin and writing results to stdout and messages to stderr, and
// returns the exit status (ExitOK, ExitFailure, …). env looks up the
// EVENTSTORE_* variables; nil means none is set. Cancelling ctx stops the
// command cleanly: what was printed is flushed and Run returns
// ExitInterrupted.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	if env == nil {
		env = func(string) string { return "" }
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	errw := &lockedWriter{w: stderr}
	out := bufio.NewWriterSize(stdout, 64<<10)
	s := &session{stdin: stdin, stdout: out, stderr: errw}
	code := dispatch(ctx, commands, []string{prog}, args, s, env)
	if err := out.Flush(); err != nil && code == ExitOK {
		s.warnf("write stdout: %v", err)
		code = ExitFailure
	}
	return code
}

// dispatch finds the command args name among cmds and runs it. path is the
// command line so far, for messages.
func dispatch(ctx context.Context, cmds []*command, path, args []string, s *session, env func(string) string) int {
	name := strings.Join(path, " ")
	who := "" // prefix of messages: "table: "
	if len(path) > 1 {
		who = strings.Join(path[1:], " ") + ": "
	}
	if len(args) == 0 {
		listCommands(s.stderr, path, cmds)
		return ExitUsage
	}
	switch a := args[0]; {
	case a == "-h" || a == "-help" || a == "--help":
		listCommands(s.stdout, path, cmds)
		return ExitOK
	case a == "help" && len(path) == 1:
		return help(s, args[1:], env)
	case strings.HasPrefix(a, "-"):
		s.warnf("%sflags go after the command: %s <command> [flags]", who, name)
		listCommands(s.stderr, path, cmds)
		return ExitUsage
	}
	i := slices.IndexFunc(cmds, func(c *command) bool { return c.name == args[0] })
	if i < 0 {
		s.warnf("%sunknown command %q", who, args[0])
		listCommands(s.stderr, path, cmds)
		return ExitUsage
	}
	cmd, path := cmds[i], append(path, args[0])
	if cmd.subs != nil {
		return dispatch(ctx, cmd.subs, path, args[1:], s, env)
	}
	return runLeaf(ctx, cmd, path, args[1:], s, env)
}

// help prints the help of the command args names, or the command list.
func help(s *session, args []string, env func(string) string) int {
	path, cmds := []string{prog}, commands
	for _, a := range args {
		i := slices.IndexFunc(cmds, func(c *command) bool { return c.name == a })
		if i < 0 {
			s.warnf("help: unknown command %q", strings.Join(append(path[1:], a), " "))
			listCommands(s.stderr, path, cmds)
			return ExitUsage
		}
		path = append(path, a)
		if cmds[i].subs == nil {
			fs, _ := newFlagSet(cmds[i], strings.Join(path, " "), env)
			printHelp(s.stdout, cmds[i], strings.Join(path, " "), fs)
			return ExitOK
		}
		cmds = cmds[i].subs
	}
	listCommands(s.stdout, path, cmds)
	return ExitOK
}

func newFlagSet(cmd *command, name string, env func(string) string) (*flag.FlagSet, action) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // Run prints usage and errors itself
	fs.Usage = func() {}
	return fs, cmd.setup(fs, env)
}

// runLeaf parses a command's flags and runs it. path is its command line,
// "eventstore" first.
func runLeaf(ctx context.Context, cmd *command, path, args []string, s *session, env func(string) string) int {
	name, who := strings.Join(path, " "), strings.Join(path[1:], " ")
	fs, act := newFlagSet(cmd, name, env)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(s.stdout, cmd, name, fs)
			return ExitOK
		}
		s.warnf("%s: %v", who, err)
		fmt.Fprintf(s.stderr, "Run '%s --help' for usage.\n", name)
		return ExitUsage
	}
	s.args = fs.Args()
	if len(s.args) > 0 && !cmd.positional {
		s.warnf("%s: unexpected argument %q", who, s.args[0])
		fmt.Fprintf(s.stderr, "Run '%s --help' for usage.\n", name)
		return ExitUsage
	}
	err := act(ctx, s)
	if err == nil {
		return ExitOK
	}
	// Flush what was printed before the message that ends it.
	if ferr := s.stdout.Flush(); ferr != nil {
		s.warnf("write stdout: %v", ferr)
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		s.warnf("%s: interrupted: %v", who, context.Cause(ctx))
		return ExitInterrupted
	}
	s.warnf("%s: %v", who, err)
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.code == ExitUsage && errors.Is(err, errUsageHint) {
			fmt.Fprintf(s.stderr, "Run '%s --help' for usage.\n", name)
		}
		return ee.code
	}
	return ExitFailure
}

// errUsageHint marks a usage error after which Run points at --help.
var errUsageHint = errors.New("see --help")

// flagErrorf returns a usage error about a flag's value (exit status 2),
// followed by a pointer to --help.
func flagErrorf(format string, args ...any) error {
	return withCode(ExitUsage, &hinted{fmt.Errorf(format, args...)})
}

type hinted struct{ error }

func (h *hinted) Unwrap() []error { return []error{h.error, errUsageHint} }

// listCommands prints the commands of a group.
func listCommands(w io.Writer, path []string, cmds []*command) {
	name := strings.Join(path, " ")
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n", name)
	if len(path) == 1 {
		fmt.Fprint(w, "\nAn event store on Amazon DynamoDB.\n")
	}
	fmt.Fprint(w, "\nCommands:\n")
	type row struct{ name, summary string }
	var rows []row
	var walk func(prefix string, cs []*command)
	walk = func(prefix string, cs []*command) {
		for _, c := range cs {
			if c.subs != nil {
				walk(prefix+c.name+" ", c.subs)
				continue
			}
			rows = append(rows, row{prefix + c.name, c.summary})
		}
	}
	walk("", cmds)
	if len(path) == 1 {
		rows = append(rows, row{"help [command]", "show a command's help"})
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.name))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %s\n", width, r.name, r.summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", name)
	if len(path) == 1 {
		fmt.Fprint(w, `
AWS configuration comes from the SDK's standard chain: AWS_REGION,
AWS_PROFILE, credentials, AWS_ENDPOINT_URL_DYNAMODB and the shared config
files; --region and --endpoint override it.

Exit status: 0 success, 1 failure, 2 usage error or bad input,
3 version conflict (append), 4 refused (checkpoint set/reset of a held or
unknown checkpoint, parked discard or table delete without --yes),
130 interrupted.
`)
	}
}

// printHelp prints a leaf command's usage, help text and flags with their
// defaults.
func printHelp(w io.Writer, cmd *command, name string, fs *flag.FlagSet) {
	synopsis := cmd.synopsis
	if synopsis == "" {
		synopsis = "[flags]"
	}
	fmt.Fprintf(w, "Usage: %s %s\n\n%s%s.\n", name, synopsis, strings.ToUpper(cmd.summary[:1]), cmd.summary[1:])
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.help))
	}
	fmt.Fprint(w, "\nFlags:\n")
	flaghelp.Write(w, fs)
}

// lockedWriter serialises writes to w; the AWS SDK may log from other
// goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

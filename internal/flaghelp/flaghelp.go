// Package flaghelp prints a flag set's flags for --help: each flag as
// "--name TYPE", its usage indented below, and its default when it is not
// the zero value (strings quoted). The eventstore commands and the worker
// daemon print their flags this way.
package flaghelp

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Write prints every flag of fs, in name order, then the -h, --help line.
func Write(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if typ != "" {
			fmt.Fprintf(w, " %s", typ)
		}
		fmt.Fprintf(w, "\n      %s", strings.ReplaceAll(usage, "\n", "\n      "))
		if def := f.DefValue; def != "" && def != "0" && def != "false" {
			if g, ok := f.Value.(flag.Getter); ok {
				if _, isString := g.Get().(string); isString {
					def = strconv.Quote(def)
				}
			}
			fmt.Fprintf(w, " (default %s)", def)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprint(w, "  -h, --help\n      show this help\n")
}

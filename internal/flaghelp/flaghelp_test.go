package flaghelp

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("table", "commits", "commits table `NAME`")
	fs.Int("buckets", 0, "number `N` of buckets\nsecond line")
	fs.Bool("force", false, "do it anyway")
	fs.Duration("wait", 2*time.Second, "how long to `WAIT`")
	var b strings.Builder
	Write(&b, fs)
	want := `  --buckets N
      number N of buckets
      second line
  --force
      do it anyway
  --table NAME
      commits table NAME (default "commits")
  --wait WAIT
      how long to WAIT (default 2s)
  -h, --help
      show this help
`
	if b.String() != want {
		t.Errorf("Write printed\n%s\nwant\n%s", b.String(), want)
	}
}

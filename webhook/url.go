package webhook

import (
	"net"
	"net/url"
	"strings"
)

// insecureReason returns why u, an absolute http or https URL, may not be
// used without Config.AllowInsecure, or "": plain http is refused unless
// the host is a loopback one (localhost, a name under .localhost, an
// address of 127.0.0.0/8 or ::1), since a request in the clear shows the
// commits, the headers (an Authorization among them) and a signature that
// the network between can read. The host is not resolved: a name that only
// resolves to a loopback address is refused too.
func insecureReason(u *url.URL) string {
	if u.Scheme != "http" || IsLoopbackHost(u.Hostname()) {
		return ""
	}
	return "plain http to " + u.Hostname() + " sends the commits, headers and signature in the clear: use https, or allow insecure URLs explicitly"
}

// IsLoopbackHost reports whether host (without a port; an IPv6 address
// without brackets) is "localhost", a name under ".localhost", or a
// loopback IP address. It resolves nothing.
func IsLoopbackHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	if i := strings.IndexByte(h, '%'); i >= 0 { // an IPv6 zone
		h = h[:i]
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

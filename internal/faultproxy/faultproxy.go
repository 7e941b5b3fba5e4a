// Package faultproxy is a TCP proxy for tests that injects network faults
// between a client and a server: a blackhole, refused connections, reset
// connections, latency, and an HTTP endpoint that refuses every request's
// credentials as AWS does. It is for tests of the daemon against DynamoDB
// Local; it is not for users.
package faultproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Mode is the fault the proxy injects.
type Mode int

// Modes.
const (
	// Pass forwards everything.
	Pass Mode = iota
	// Blackhole accepts connections but forwards nothing either way on
	// new or open ones, and sends nothing back, as a network that drops
	// every packet; what was held is forwarded once the mode changes, as
	// the network's retransmissions would.
	Blackhole
	// Refuse closes the listener (connecting is refused) and resets the
	// open connections, as a server that is down.
	Refuse
	// Reset resets the open connections and every new one as soon as it
	// is accepted.
	Reset
	// Latency forwards everything, each chunk read delayed by the
	// latency given to SetLatency, in each direction.
	Latency
	// AuthFail answers every HTTP request itself with 400
	// UnrecognizedClientException, the answer of AWS to credentials it
	// does not know; open connections are closed.
	AuthFail
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Blackhole:
		return "blackhole"
	case Refuse:
		return "refuse"
	case Reset:
		return "reset"
	case Latency:
		return "latency"
	case AuthFail:
		return "authfail"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Proxy forwards TCP connections from its own loopback address to a
// target. It is safe for concurrent use.
type Proxy struct {
	target string
	addr   string

	mu      sync.Mutex
	mode    Mode
	latency time.Duration
	ln      net.Listener // nil while refusing
	conns   map[net.Conn]bool
	changed chan struct{} // closed at every mode change
	closed  bool
	wg      sync.WaitGroup
}

// New starts a proxy to target (host:port) on a free loopback port, in
// mode Pass.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}, changed: make(chan struct{})}
	p.serve(ln)
	return p, nil
}

// Addr returns the proxy's address (host:port); it stays the same in
// every mode.
func (p *Proxy) Addr() string { return p.addr }

// URL returns "http://" and Addr.
func (p *Proxy) URL() string { return "http://" + p.addr }

// SetLatency sets the delay of mode Latency.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// Set switches to mode m. Leaving Refuse listens again on the same
// address; it returns the error of doing so.
func (p *Proxy) Set(m Mode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("faultproxy: closed")
	}
	if p.mode == AuthFail && m != AuthFail {
		// Connections answered by the proxy itself end with the mode.
		for c := range p.conns {
			_ = c.Close()
		}
	}
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	switch m {
	case Refuse:
		if p.ln != nil {
			_ = p.ln.Close()
			p.ln = nil
		}
		p.resetAll()
	case Reset:
		p.resetAll()
	case AuthFail:
		for c := range p.conns {
			_ = c.Close()
		}
	}
	if m != Refuse && p.ln == nil {
		var ln net.Listener
		var err error
		for range 50 { // the port may linger a moment after the close
			if ln, err = net.Listen("tcp", p.addr); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("faultproxy: listening again on %s: %w", p.addr, err)
		}
		p.ln = ln
		p.serve(ln)
	}
	return nil
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// resetAll resets every open connection (RST, not FIN). p.mu is held.
func (p *Proxy) resetAll() {
	for c := range p.conns {
		reset(c)
	}
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *Proxy) serve(ln net.Listener) {
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.handle(c) })
		}
	})
}

// track adds or removes a connection; it returns false when the proxy is
// closed.
func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !add {
		delete(p.conns, c)
		return true
	}
	if p.closed {
		return false
	}
	p.conns[c] = true
	return true
}

// state returns the mode, the latency, and a channel closed at the next
// change.
func (p *Proxy) state() (Mode, time.Duration, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.latency, p.changed
}

func (p *Proxy) handle(c net.Conn) {
	if !p.track(c, true) {
		_ = c.Close()
		return
	}
	defer p.track(c, false)
	defer c.Close()
	switch mode, _, _ := p.state(); mode {
	case Reset, Refuse:
		reset(c)
		return
	case AuthFail:
		refuseCredentials(c)
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		reset(c)
		return
	}
	if !p.track(up, true) {
		_ = up.Close()
		return
	}
	defer p.track(up, false)
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { p.pipe(up, c); done <- struct{}{} }()
	go func() { p.pipe(c, up); done <- struct{}{} }()
	<-done
	// One side ended: end both.
	_ = c.Close()
	_ = up.Close()
	<-done
}

// pipe copies src to dst, holding data while blackholed and delaying it
// under latency.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		if !p.waitFlowing() {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitFlowing() {
				return
			}
			if mode, d, changed := p.state(); mode == Latency && d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-changed:
					t.Stop()
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitFlowing waits while the proxy is blackholed; it returns false when
// the connection is to end (the proxy closed, or a mode that ends it).
func (p *Proxy) waitFlowing() bool {
	for {
		p.mu.Lock()
		mode, changed, closed := p.mode, p.changed, p.closed
		p.mu.Unlock()
		switch {
		case closed:
			return false
		case mode != Blackhole:
			return true
		}
		<-changed
	}
}

// refuseCredentials answers every HTTP request on c with AWS's answer to
// unknown credentials.
func refuseCredentials(c net.Conn) {
	const body = `{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"The security token included in the request is invalid."}`
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
		resp := "HTTP/1.1 400 Bad Request\r\n" +
			"Content-Type: application/x-amz-json-1.0\r\n" +
			"X-Amzn-Errortype: UnrecognizedClientException\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
	}
}

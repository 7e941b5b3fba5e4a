package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// echoServer echoes every line back.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func newProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// roundTrip writes a line on c and reads it back within wait.
func roundTrip(c net.Conn, line string, wait time.Duration) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestPassAndBlackhole(t *testing.T) {
	p := newProxy(t)
	c := dial(t, p)
	if got, err := roundTrip(c, "one", 5*time.Second); err != nil || got != "one" {
		t.Fatalf("pass: %q, %v", got, err)
	}
	if err := p.Set(Blackhole); err != nil {
		t.Fatal(err)
	}
	_, err := roundTrip(c, "two", 300*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blackhole, open connection: %v, want a timeout", err)
	}
	fresh := dial(t, p) // accepted, but nothing comes back
	if _, err := roundTrip(fresh, "three", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blackhole, new connection: %v, want a timeout", err)
	}
	if err := p.Set(Pass); err != nil {
		t.Fatal(err)
	}
	// What was held is forwarded once the fault ends.
	_ = fresh.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := bufio.NewReader(fresh).ReadString('\n')
	if err != nil || got != "three\n" {
		t.Fatalf("after the blackhole: %q, %v", got, err)
	}
}

func TestRefuseAndReset(t *testing.T) {
	p := newProxy(t)
	c := dial(t, p)
	if err := p.Set(Refuse); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c, "x", 5*time.Second); err == nil {
		t.Fatal("refuse: the open connection still works")
	}
	if c2, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		_ = c2.Close()
		t.Fatal("refuse: a connection was accepted")
	}
	if err := p.Set(Reset); err != nil {
		t.Fatal(err)
	}
	// Accepted, then reset: the dial or the first exchange fails.
	if c3, err := net.Dial("tcp", p.Addr()); err == nil {
		_, err = roundTrip(c3, "y", 5*time.Second)
		_ = c3.Close()
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("reset: %v, want a connection error", err)
		}
	}
	if err := p.Set(Pass); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(dial(t, p), "z", 5*time.Second); err != nil || got != "z" {
		t.Fatalf("pass again: %q, %v", got, err)
	}
}

func TestLatency(t *testing.T) {
	p := newProxy(t)
	p.SetLatency(200 * time.Millisecond)
	if err := p.Set(Latency); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	if _, err := roundTrip(c, "slow", 250*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("latency: %v, want no answer within 250 ms (two delays of 200 ms)", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "slow\n" {
		t.Fatalf("latency: %q, %v", got, err)
	}
}

func TestAuthFail(t *testing.T) {
	p := newProxy(t)
	if err := p.Set(AuthFail); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(p.URL(), "application/x-amz-json-1.0", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Amzn-Errortype") != "UnrecognizedClientException" || !strings.Contains(string(body), "UnrecognizedClientException") {
		t.Fatalf("authfail: %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

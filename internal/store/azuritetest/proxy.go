package azuritetest

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
)

// Proxy is a loopback TCP proxy in front of the table endpoint. Stopping it makes the backend vanish for
// clients that use its connection string (connections are cut and new ones refused) while the data stays, and
// starting it again on the same port brings the backend back at once. It is the cheap way to test outages;
// Server.Stop/Start restart the real process.
type Proxy struct {
	target string // host:port of the table endpoint
	base   string // connection string of the endpoint, rewritten to the proxy

	mu    sync.Mutex
	addr  string
	ln    net.Listener
	conns map[net.Conn]struct{}
}

// NewProxy starts a proxy in front of the endpoint ConnectionString uses and closes it at the end of the test.
// The endpoint must be plain http (Azurite), which the proxy forwards byte for byte.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	base := os.Getenv(EnvConnection)
	if base == "" {
		srv, err := sharedServer()
		if err != nil {
			t.Fatalf("azuritetest: %v", err)
		}
		base = srv.ConnectionString()
	}
	p, err := newProxy(base)
	if err != nil {
		t.Fatalf("azuritetest: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}

func newProxy(conn string) (*Proxy, error) {
	var endpoint *url.URL
	var parts []string
	for part := range strings.SplitSeq(strings.TrimRight(conn, ";"), ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), "TableEndpoint") {
			u, err := url.Parse(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("parsing TableEndpoint: %w", err)
			}
			endpoint = u
			continue
		}
		parts = append(parts, part)
	}
	if endpoint == nil || endpoint.Scheme != "http" {
		return nil, fmt.Errorf("the proxy needs an http TableEndpoint in the connection string")
	}
	p := &Proxy{target: endpoint.Host, conns: map[net.Conn]struct{}{}}
	if err := p.listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	proxied := *endpoint
	proxied.Host = p.addr
	p.base = strings.Join(append(parts, "TableEndpoint="+proxied.String()), ";") + ";"
	return p, nil
}

// ConnectionString returns a connection string through the proxy for a fresh set of tables.
func (p *Proxy) ConnectionString() string {
	return WithPrefix(p.base, FreshPrefix())
}

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.addr }

func (p *Proxy) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("proxy listening on %s: %w", addr, err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go p.accept(ln)
	return nil
}

func (p *Proxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) serve(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c) || !p.track(up) {
		_ = c.Close()
		_ = up.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	_ = c.Close()
	_ = up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// Stop closes the listener and cuts every open connection.
func (p *Proxy) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return
	}
	_ = p.ln.Close()
	p.ln = nil
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Start listens again on the same port.
func (p *Proxy) Start() error {
	p.mu.Lock()
	running := p.ln != nil
	addr := p.addr
	p.mu.Unlock()
	if running {
		return nil
	}
	return p.listen(addr)
}

// Package transport holds what the service's outbound HTTP clients (Table Storage, Key Vault, Graph, Intune) share.
package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// ErrAnswerTooLarge is what a client built with LimitAnswers gets for an answer longer than it accepts. Callers
// treat it like a transport failure (the service behind is unusable for now): a 503, never a half-read answer.
var ErrAnswerTooLarge = errors.New("transport: answer larger than the client accepts")

// Doer sends one HTTP request: *http.Client, and azcore's policy.Transporter, which the Azure SDK clients take as
// their transport.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// LimitAnswers returns inner (Default when nil) with every answer's body capped at max bytes. The Azure
// SDK reads an answer whole before it decodes it, so whatever sits between the service and Table Storage or Key
// Vault (a proxy, a misrouted private endpoint) could otherwise make one read allocate without bound. An answer
// that says it is longer is refused before its body is read; one that turns out longer fails its read.
func LimitAnswers(inner Doer, max int64) Doer {
	if inner == nil {
		inner = Default
	}
	return limitedDoer{inner: inner, max: max}
}

// Default is the client Table Storage and Key Vault use unless a test gives them another. It has the settings of
// azcore's own default client, which an SDK client given a transport (as LimitAnswers makes it) no longer gets:
// dial and TLS timeouts, TLS 1.2 or later, the proxy from the environment, and HTTP/2 health pings (a ping after
// 10 s without a frame, the connection dropped 5 s later) so that a dead connection fails fast instead of hanging
// until the call's deadline. It keeps more idle connections per host than azcore's 10, so that a busy instance
// reuses its connections to the table endpoint and the vault instead of opening new ones.
var Default = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	ForceAttemptHTTP2:     true,
	MaxIdleConns:          100,
	MaxIdleConnsPerHost:   64,
	IdleConnTimeout:       90 * time.Second,
	TLSHandshakeTimeout:   10 * time.Second,
	ExpectContinueTimeout: time.Second,
	TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, Renegotiation: tls.RenegotiateFreelyAsClient},
	HTTP2:                 &http.HTTP2Config{SendPingTimeout: 10 * time.Second, PingTimeout: 5 * time.Second},
}}

type limitedDoer struct {
	inner Doer
	max   int64
}

func (d limitedDoer) Do(req *http.Request) (*http.Response, error) {
	resp, err := d.inner.Do(req)
	if err != nil {
		return resp, err
	}
	if resp.ContentLength > d.max {
		resp.Body.Close()
		return nil, &tooLarge{fmt.Sprintf("%s %s answered %d bytes, at most %d accepted", req.Method, req.URL.Host,
			resp.ContentLength, d.max)}
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: d.max, what: req.Method + " " + req.URL.Host}
	return resp, nil
}

// tooLarge is ErrAnswerTooLarge with what answered it.
type tooLarge struct{ detail string }

func (e *tooLarge) Error() string { return ErrAnswerTooLarge.Error() + ": " + e.detail }
func (e *tooLarge) Unwrap() error { return ErrAnswerTooLarge }

// NonRetriable keeps azcore's retry policy (which looks for this method) from asking again and reading another
// oversized answer: the caller answers 503 and its own client comes back later.
func (e *tooLarge) NonRetriable() {}

// limitedBody reads at most left bytes and fails the read that would go past them.
type limitedBody struct {
	io.ReadCloser
	left int64
	what string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells an answer of exactly the cap from a longer one.
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			return 0, &tooLarge{b.what + " answered more bytes than accepted"}
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

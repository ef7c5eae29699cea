package transport_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/transport"
)

// TestLimitAnswers: answers up to the cap read whole, with or without a Content-Length; a longer one is refused
// before its body is read when it says so, and fails its read when it does not.
func TestLimitAnswers(t *testing.T) {
	t.Parallel()
	const limit = 1000
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.URL.Query().Has("chunked") {
			w.(http.Flusher).Flush() // no Content-Length: the body is sent chunked
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		_, _ = io.WriteString(w, strings.Repeat("x", n))
	}))
	t.Cleanup(srv.Close)
	c := transport.LimitAnswers(srv.Client(), limit)
	get := func(query string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/?"+query, nil)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return len(b), err
	}
	for _, q := range []string{"n=0", "n=999", "n=1000", "n=0&chunked", "n=1000&chunked"} {
		if n, err := get(q); err != nil || strconv.Itoa(n) != strings.TrimSuffix(strings.TrimPrefix(q, "n="), "&chunked") {
			t.Errorf("%s: read %d bytes, %v; want all of it", q, n, err)
		}
	}
	for _, q := range []string{"n=1001", "n=5000000", "n=1001&chunked", "n=5000000&chunked"} {
		if n, err := get(q); !errors.Is(err, transport.ErrAnswerTooLarge) || n > limit {
			t.Errorf("%s: read %d bytes, %v; want ErrAnswerTooLarge after at most %d", q, n, err, limit)
		}
	}
	if transport.LimitAnswers(nil, limit) == nil {
		t.Error("no default client")
	}
}

// TestDefaultKeepsAzcoreSettings: the client that replaces azcore's default one, once the SDK clients are given a
// transport, keeps its settings: a proxy from the environment, TLS 1.2 or later, HTTP/2 with health pings, and
// idle connections for concurrent calls to one host (Go's default keeps 2).
func TestDefaultKeepsAzcoreSettings(t *testing.T) {
	t.Parallel()
	tr := transport.Default.Transport.(*http.Transport)
	if tr.Proxy == nil || tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion < tls.VersionTLS12 ||
		!tr.ForceAttemptHTTP2 || tr.MaxIdleConnsPerHost < 10 || tr.TLSHandshakeTimeout == 0 || tr.DialContext == nil {
		t.Errorf("default transport lacks azcore's settings: %+v", tr)
	}
	if tr.HTTP2 == nil || tr.HTTP2.SendPingTimeout == 0 || tr.HTTP2.PingTimeout == 0 {
		t.Errorf("default transport sends no HTTP/2 health pings: %+v", tr.HTTP2)
	}
}

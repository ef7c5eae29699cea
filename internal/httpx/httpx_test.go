package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/store"
)

func TestReadBodyCap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		wantErr error
	}{
		{"at the cap", MaxBody, false, nil},
		{"over the cap, Content-Length", MaxBody + 1, false, ErrTooLarge},
		{"over the cap, chunked", MaxBody + 1, true, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(make([]byte, tc.size)))
			if tc.chunked {
				r.ContentLength = -1
			}
			b, err := ReadBody(httptest.NewRecorder(), r, MaxBody)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && len(b) != tc.size {
				t.Fatalf("read %d bytes", len(b))
			}
		})
	}
}

// TestReadBodyDeclaredLength: the buffer sized from Content-Length reads the whole body whatever the declared length
// says (less, more, zero, unknown, over preallocMax), and the cap holds when the declared length understates it.
func TestReadBodyDeclaredLength(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 400)
	for _, declared := range []int64{-1, 0, 1, 3999, 4000, 4001, preallocMax, preallocMax + 1} {
		b, err := readAll(bytes.NewReader(body), declared)
		if err != nil || !bytes.Equal(b, body) {
			t.Errorf("declared %d: read %d bytes, %v", declared, len(b), err)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(make([]byte, MaxBody+1)))
	r.ContentLength = 100
	if _, err := ReadBody(httptest.NewRecorder(), r, MaxBody); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("understated Content-Length over the cap: err = %v", err)
	}
}

func TestWriteProblem(t *testing.T) {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	WriteProblem(rec, r, &Problem{Status: http.StatusServiceUnavailable, Code: "unavailable", Detail: "later",
		RetryAfter: 1500 * time.Millisecond, Header: http.Header{"WWW-Authenticate": {"Bearer"}}})
	if rec.Code != 503 || rec.Header().Get("Content-Type") != "application/problem+json" ||
		rec.Header().Get("Retry-After") != "2" || rec.Header().Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	var p map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p["type"] != "about:blank" || p["title"] != "Service Unavailable" || p["code"] != "unavailable" || p["status"] != float64(503) {
		t.Fatalf("problem = %v", p)
	}
}

// TestEdge: a panicking handler answers 500 problem+json (the connection is not dropped), every answer carries a
// request ID, and the access log never contains the query string (a GET PKIOperation carries the SCEP message).
func TestEdge(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	h := Edge(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		if RequestID(r.Context()) == "" {
			t.Error("no request ID in the context")
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/panic")
	if err != nil {
		t.Fatalf("the panic dropped the connection: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("panic answer %d %v", resp.StatusCode, resp.Header)
	}
	resp, err = http.Get(srv.URL + "/api/scep/static?operation=PKIOperation&message=SECRETMESSAGE")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// Problem details quote caller-chosen names; no answer is ever read as another type than the one it declares.
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff on every answer", got)
	}
	out := logs.String()
	if strings.Contains(out, "SECRETMESSAGE") {
		t.Fatal("the query string reached the access log")
	}
	if !strings.Contains(out, `"msg":"handler panic"`) || !strings.Contains(out, `"status":418`) {
		t.Fatalf("logs:\n%s", out)
	}
}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want time.Duration
		ok   bool
	}{
		{fmt.Errorf("x: %w", store.ErrUnavailable), DefaultRetryAfter, true},
		{fmt.Errorf("x: %w", &keyvault.ThrottledError{RetryAfter: 7 * time.Second}), 7 * time.Second, true},
		{fmt.Errorf("x: %w", keyvault.ErrUnavailable), DefaultRetryAfter, true},
		{context.DeadlineExceeded, DefaultRetryAfter, true},
		{store.ErrConflict, 0, false},
		{fmt.Errorf("signing: %w", keyvault.ErrForbidden), DefaultRetryAfter, true},
		{keyvault.ErrDisabled, 0, false},
	} {
		d, ok := Unavailable(tc.err)
		if ok != tc.ok || d != tc.want {
			t.Errorf("Unavailable(%v) = %v %v, want %v %v", tc.err, d, ok, tc.want, tc.ok)
		}
	}
}

// TestRequireLength: a POST without a declared length is answered 411 before the handler sees an empty body.
func TestRequireLength(t *testing.T) {
	reached := false
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true })
	for _, tc := range []struct {
		name   string
		method string
		length int64
		header string
		want   bool // reaches the handler
	}{
		{"declared length", http.MethodPost, 10, "10", true},
		{"explicit zero", http.MethodPost, 0, "0", true},
		{"chunked", http.MethodPost, -1, "", false},
		{"no length at all", http.MethodPost, 0, "", false},
		{"GET", http.MethodGet, 0, "", true},
	} {
		for _, problem := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/problem=%t", tc.name, problem), func(t *testing.T) {
				reached = false
				r := httptest.NewRequest(tc.method, "/api/csr", strings.NewReader(""))
				r.ContentLength = tc.length
				r.Header.Del("Content-Length")
				if tc.header != "" {
					r.Header.Set("Content-Length", tc.header)
				}
				w := httptest.NewRecorder()
				RequireLength(problem, next).ServeHTTP(w, r)
				if reached != tc.want {
					t.Fatalf("reached handler = %t, want %t", reached, tc.want)
				}
				if tc.want {
					return
				}
				ct := w.Header().Get("Content-Type")
				if w.Code != http.StatusLengthRequired || !strings.Contains(w.Body.String(), "Content-Length") ||
					(problem != (ct == "application/problem+json")) {
					t.Fatalf("got %d %s %q", w.Code, ct, w.Body.String())
				}
			})
		}
	}
}

func TestLoopbackHostOnly(t *testing.T) {
	h := LoopbackHostOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for host, want := range map[string]int{
		"127.0.0.1:7071": http.StatusNoContent, "localhost:7071": http.StatusNoContent, "LOCALHOST.": http.StatusNoContent,
		"[::1]:7071": http.StatusNoContent, "127.8.9.10": http.StatusNoContent, "[::ffff:127.0.0.1]:1": http.StatusNoContent,
		"app.localhost:7071": http.StatusNoContent,
		// DNS rebinding: the page's own name, now resolving to 127.0.0.1.
		"rebind.evil.example:7071": http.StatusMisdirectedRequest, "localhost.evil.example": http.StatusMisdirectedRequest,
		"10.0.0.1:7071": http.StatusMisdirectedRequest, "0.0.0.0:7071": http.StatusMisdirectedRequest,
		"": http.StatusMisdirectedRequest,
	} {
		r := httptest.NewRequest(http.MethodPost, "/api/dev/token", nil)
		r.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != want {
			t.Errorf("Host %q: %d, want %d", host, rec.Code, want)
		}
		if want != http.StatusNoContent && !strings.Contains(rec.Body.String(), "not_loopback_host") {
			t.Errorf("Host %q: body %q, want the reason code", host, rec.Body.String())
		}
	}
}

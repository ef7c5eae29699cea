// Package httpx holds the HTTP edge shared by every route: body caps, problem+json answers, the mapping of
// internal errors to statuses, panic recovery and the access log. It has no business logic.
package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// MaxBody is the request body cap for every route that parses a body (reliability.md §3.3: body size is a
// security control against BER nesting bombs).
const MaxBody = 64 << 10

// ErrTooLarge is returned by ReadBody for bodies over the cap.
var ErrTooLarge = errors.New("request body too large")

// WriteBody answers 200 with body, its Content-Type and its Content-Length. Without the length, net/http sends
// any body over 2 KB (a CertRep, a chain) chunked, which HTTP/1.1 SCEP clients in older network gear do not all
// decode; with it the Functions host can pass the length on as well.
func WriteBody(w http.ResponseWriter, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// Prefers reports whether the Accept header values rank the media type alt above def (a tie goes to alt), with alt
// named explicitly and not ruled out by q=0. Wildcards choose nothing: the caller's default, def, stands.
func Prefers(accept []string, alt, def string) bool {
	altQ, defQ := -1.0, -1.0
	for mt, q := range Accepted(accept) {
		switch mt {
		case alt:
			altQ = max(altQ, q)
		case def:
			defQ = max(defQ, q)
		}
	}
	return altQ > 0 && altQ >= defQ
}

// Accepted yields the media ranges of Accept header values in the order listed, each with its quality (1 when it
// has none). A range that does not parse, or whose q is not a number from 0 to 1, is skipped (RFC 9110 §12.5.1).
func Accepted(accept []string) iter.Seq2[string, float64] {
	return func(yield func(string, float64) bool) {
		for _, v := range accept {
			for part := range strings.SplitSeq(v, ",") {
				mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
				if err != nil {
					continue
				}
				q := 1.0
				if s, ok := params["q"]; ok {
					f, err := strconv.ParseFloat(s, 64)
					if err != nil || f < 0 || f > 1 {
						continue
					}
					q = f
				}
				if !yield(mt, q) {
					return
				}
			}
		}
	}
}

// ReadBody reads at most limit bytes; a larger body gives ErrTooLarge without reading the rest.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, ErrTooLarge
	}
	b, err := readAll(http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, ErrTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	return b, nil
}

// preallocMax bounds the buffer a declared Content-Length reserves before any of the body has arrived, so that a
// client announcing MaxBody and sending nothing does not hold MaxBody per connection.
const preallocMax = 16 << 10

// readAll is io.ReadAll with a first buffer sized for the declared length (-1 when unknown): a SCEP message or a
// CSR is read into one allocation instead of io.ReadAll's growth from 512 bytes.
func readAll(r io.Reader, declared int64) ([]byte, error) {
	if declared < 0 || declared > preallocMax {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, declared+1) // +1: the read that sees EOF needs room too
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // more than declared: let append grow the buffer
		}
	}
}

// Problem is an RFC 9457 problem document with a stable reason code.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Code     string `json:"code"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// RetryAfter, when set, becomes the Retry-After header (seconds).
	RetryAfter time.Duration `json:"-"`
	// Header adds response headers (e.g. WWW-Authenticate).
	Header http.Header `json:"-"`
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail) }

// WriteProblem answers with p as application/problem+json.
func WriteProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	p.Instance = RequestID(r.Context())
	for k, vs := range p.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((p.RetryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// MethodNotAllowed answers 405 with the Allow header.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request, allow ...string) {
	for _, a := range allow {
		w.Header().Add("Allow", a)
	}
	WriteProblem(w, r, &Problem{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
		Detail: "method " + r.Method + " is not allowed here"})
}

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID returns the ID the access log gave this request.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// statusRecorder captures the status for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

// Unwrap lets http.ResponseController reach the connection (a handler that runs longer than the server's write
// timeout extends its own deadline).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// Edge wraps a handler with a request ID, nosniff on every answer (problem details and admin JSON quote
// caller-chosen names, so no browser may read an answer as another type), panic recovery (500, never a dropped
// connection) and one JSON access log line per request. The Functions invocation ID, when present, is logged for correlation. Query strings are
// not logged: a GET PKIOperation carries the whole SCEP message there.
func Edge(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		idb := make([]byte, 8)
		_, _ = rand.Read(idb)
		id := hex.EncodeToString(idb)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		rec := &statusRecorder{ResponseWriter: w}
		rec.Header().Set("X-Request-Id", id)
		rec.Header().Set("X-Content-Type-Options", "nosniff")
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("handler panic", "request_id", id, "path", r.URL.Path, "panic", fmt.Sprint(p),
					"stack", string(debug.Stack()))
				if rec.status == 0 {
					WriteProblem(rec, r, &Problem{Status: http.StatusInternalServerError, Code: "internal_error",
						Detail: "internal error"})
				}
			}
			if r.URL.Path == "/" {
				return // the host's readiness and latency pings
			}
			log.Info("request", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", rec.status,
				"bytes", rec.bytes, "duration_ms", time.Since(start).Milliseconds(),
				"invocation_id", r.Header.Get("X-Azure-Functions-InvocationId"))
		}()
		next.ServeHTTP(rec, r)
	})
}

// LengthRequiredDetail explains a 411: behind the Functions host a body without a declared length never arrives.
const LengthRequiredDetail = "the request body must be sent with a Content-Length header: the Azure Functions host " +
	"forwards a request body only when Content-Length is greater than zero, so a chunked body " +
	"(Transfer-Encoding: chunked) would arrive empty"

// RequireLength guards a route whose POST body is the message (SCEP PKIOperation, /api/csr, OCSP). With
// enableForwardingHttpRequest the host copies a body only when Content-Length > 0, so a chunked POST reaches the
// handler empty and would be answered with a misleading parse error. Such a POST (length unknown, or no
// Content-Length at all) is answered 411 here instead: problem+json when problem is true, otherwise plain text for
// clients that do not read JSON (SCEP, OCSP). An explicit Content-Length: 0 is left to the handler's own error.
func RequireLength(problem bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || LengthKnown(r) {
			next.ServeHTTP(w, r)
			return
		}
		if problem {
			WriteLengthRequired(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusLengthRequired)
		_, _ = io.WriteString(w, "411 Length Required: "+LengthRequiredDetail+"\n")
	})
}

// LengthKnown reports whether r says how long its body is: a Content-Length greater than zero, or an explicit
// Content-Length: 0. Behind the Functions host, a body whose length was not given (chunked, or no header at all)
// may have been dropped on the way.
func LengthKnown(r *http.Request) bool {
	return r.ContentLength > 0 || r.ContentLength == 0 && r.Header.Get("Content-Length") != ""
}

// WriteLengthRequired answers 411 problem+json (RequireLength's answer).
func WriteLengthRequired(w http.ResponseWriter, r *http.Request) {
	WriteProblem(w, r, &Problem{Status: http.StatusLengthRequired, Code: "length_required", Detail: LengthRequiredDetail})
}

// LoopbackHostOnly answers 421 to requests whose Host header is not a loopback name or address. A service that
// listens on 127.0.0.1 is reached by loopback peers only, but a web page the developer visits can rebind its own
// name to 127.0.0.1 (DNS rebinding) and then read the answers as same-origin: the Host header it sends still
// names the attacker's host.
func LoopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			WriteProblem(w, r, &Problem{Status: http.StatusMisdirectedRequest, Code: "not_loopback_host",
				Detail: "a local service answers only requests addressed to localhost or a loopback address"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// LogHandler wraps h so that every record logged with a request's context (the ...Context methods of slog.Logger)
// carries that request's ID (request_id), the one its access log line and its problem details' instance give: the
// detail lines a request writes (a refusal's reason, an issued serial) can then be found from the ID a client
// reports (reliability.md: one generic message to the client, full detail and the request ID in the logs).
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

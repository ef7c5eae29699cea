package ocsp

import (
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTP constants (RFC 6960 Appendix A, RFC 5019 §5).
const (
	ContentTypeRequest  = "application/ocsp-request"
	ContentTypeResponse = "application/ocsp-response"
	// MaxRequestSize caps a request body. A single-certificate request with a nonce is about 120 bytes; the
	// cap leaves room for requestor names and extensions while bounding memory.
	MaxRequestSize = 64 << 10
	// PathPrefix is where the responder is mounted; GET requests carry the request below it.
	PathPrefix = "/api/ocsp"
)

// maxGETPathLen bounds the escaped path of a GET: base64 of MaxRequestSize, percent-escaped.
const maxGETPathLen = 3 * (MaxRequestSize*4/3 + 4)

var (
	errNoRequest   = errors.New("no OCSP request in the URL")
	errBadEncoding = errors.New("OCSP request in the URL is not base64")
)

// Handler serves the OCSP responder over HTTP:
//
//	POST /api/ocsp                  body = DER request, Content-Type application/ocsp-request
//	GET  /api/ocsp/{base64 request} RFC 5019 §5, cacheable by HTTP caches
//
// It also accepts GET paths without the /api/ocsp prefix, for use behind http.StripPrefix. Route it so that
// paths are not cleaned: base64 contains "/" and may contain "//", which http.ServeMux redirects.
// OCSP-level errors (malformedRequest, unauthorized, tryLater, internalError) are answered in-band with HTTP
// 200, as RFC 6960 clients expect; HTTP errors are used only for what never reached the OCSP layer.
func Handler(r *Responder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var (
			der []byte
			err error
		)
		isGET := req.Method == http.MethodGet || req.Method == http.MethodHead
		switch {
		case req.Method == http.MethodPost:
			if mt, _, perr := mime.ParseMediaType(req.Header.Get("Content-Type")); perr != nil || mt != ContentTypeRequest {
				httpError(w, http.StatusUnsupportedMediaType)
				return
			}
			der, err = io.ReadAll(http.MaxBytesReader(w, req.Body, MaxRequestSize))
			if err != nil {
				if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
					httpError(w, http.StatusRequestEntityTooLarge)
					return
				}
				httpError(w, http.StatusBadRequest)
				return
			}
		case isGET:
			raw := req.URL.EscapedPath()
			if len(raw) > maxGETPathLen {
				httpError(w, http.StatusRequestURITooLong)
				return
			}
			der, err = decodeGETPath(raw)
			if err != nil {
				// Not decodable as a request at all: answer malformedRequest with a 400 so neither
				// clients nor caches mistake it for a status.
				writeOCSP(w, http.StatusBadRequest, respMalformed.der, "no-store")
				return
			}
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			httpError(w, http.StatusMethodNotAllowed)
			return
		}

		res, err := r.respond(req.Context(), der)
		if err != nil {
			level := slog.LevelWarn
			if errors.Is(err, ErrMalformedRequest) || errors.Is(err, ErrUnauthorized) {
				level = slog.LevelDebug // client mistakes, not ours
			}
			r.log.Log(req.Context(), level, "OCSP request not answered with a status", "error", err, "method", req.Method)
		}
		if !isGET || !res.public || res.etag == "" {
			// POST responses are not cached by HTTP caches (RFC 5019 §5); nonce and error responses must not be.
			cc := ""
			if isGET {
				cc = "no-store"
			}
			writeOCSP(w, http.StatusOK, res.der, cc)
			return
		}

		now := r.clock.Now()
		maxAge := max(res.staleAt.Sub(now), 0).Truncate(time.Second)
		h := w.Header()
		h.Set("ETag", res.etag)
		h.Set("Last-Modified", res.thisUpdate.UTC().Format(http.TimeFormat))
		h.Set("Expires", now.Add(maxAge).UTC().Format(http.TimeFormat))
		// RFC 5019 §6.2.
		cc := "max-age=" + strconv.Itoa(int(maxAge/time.Second)) + ", public, no-transform, must-revalidate"
		if inm := req.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, res.etag) {
			h.Set("Cache-Control", cc)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		writeOCSP(w, http.StatusOK, res.der, cc)
	})
}

func writeOCSP(w http.ResponseWriter, status int, body []byte, cacheControl string) {
	h := w.Header()
	h.Set("Content-Type", ContentTypeResponse)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if cacheControl != "" {
		h.Set("Cache-Control", cacheControl)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func httpError(w http.ResponseWriter, status int) {
	http.Error(w, http.StatusText(status), status)
}

// decodeGETPath extracts the DER request from an escaped URL path. It tolerates what proxies and the Functions
// host do to base64 in a path: percent-escaping (once or twice), "+" turned into a space, the URL-safe
// alphabet and missing padding.
func decodeGETPath(escaped string) ([]byte, error) {
	p := escaped
	if p == PathPrefix || strings.HasPrefix(p, PathPrefix+"/") {
		p = p[len(PathPrefix):]
	}
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return nil, errNoRequest
	}
	s, err := url.PathUnescape(p)
	if err != nil {
		return nil, errBadEncoding
	}
	if strings.Contains(s, "%") { // escaped twice on the way
		if s2, err := url.PathUnescape(s); err == nil {
			s = s2
		}
	}
	s = strings.NewReplacer(" ", "+", "-", "+", "_", "/").Replace(s)
	der, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(der) == 0 {
		return nil, errBadEncoding
	}
	return der, nil
}

// etagMatch implements If-None-Match's weak comparison (RFC 9110 §13.1.2).
func etagMatch(header, etag string) bool {
	for part := range strings.SplitSeq(header, ",") {
		t := strings.TrimSpace(part)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

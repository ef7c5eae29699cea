package crl

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/httpx"
)

// Media types served by Handler.
const (
	ContentTypeDER = "application/pkix-crl" // RFC 5280 §4.2.1.13, RFC 2585
	ContentTypePEM = "application/x-pem-file"
)

// Handler serves GET/HEAD /api/crl: the current CRL as DER, or PEM when the client's Accept header prefers
// application/x-pem-file. Responses carry validators (ETag, Last-Modified) so conditional requests get 304, and
// are cacheable until the CRL's refresh point, after which this service would hand out a newer CRL anyway; a CRL
// served in place of one that could not be made (a revocation is known that it lacks) is not cacheable at all.
func Handler(p *Publisher) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		c, err := p.Current(r.Context())
		if err != nil {
			writeUnavailable(w, p.backoff)
			return
		}

		body, ctype, etag := c.DER, ContentTypeDER, c.ETag
		if httpx.Prefers(r.Header.Values("Accept"), ContentTypePEM, ContentTypeDER) {
			// A strong ETag identifies one representation, so PEM gets its own.
			body, ctype, etag = c.PEM, ContentTypePEM, strings.TrimSuffix(c.ETag, `"`)+`-pem"`
		}
		now := p.clock.Now()
		maxAge := max(c.RefreshAt().Sub(now), 0).Truncate(time.Second)
		if !p.servedFresh(c) {
			// A revocation is known that this CRL lacks (its successor could not be signed yet): a cache that kept
			// it until the refresh point would hide the revocation for hours after the outage ended.
			maxAge = 0
		}

		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Vary", "Accept")
		h.Set("ETag", etag)
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(maxAge/time.Second)))
		h.Set("Expires", now.Add(maxAge).UTC().Format(http.TimeFormat))
		// Last-Modified: when this CRL was made (Signed), not its back-dated thisUpdate, so that a newer CRL is
		// never older by its date than one an instance signed minutes before it. It is not a validator, though:
		// HTTP dates have whole seconds, and a revocation can make the next CRL within the second of the last one
		// (or on an instance whose clock runs behind), which If-Modified-Since would answer 304 with the old CRL
		// still in the client's hands. So ServeContent gets no modification time and answers 304 only to the
		// strong ETag (If-None-Match), besides HEAD without a body.
		h.Set("Last-Modified", c.Signed.UTC().Format(http.TimeFormat))
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

// problem is an RFC 9457 problem document.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
}

func writeUnavailable(w http.ResponseWriter, retryAfter time.Duration) {
	body, _ := json.Marshal(problem{ // cannot fail: fixed struct of strings and an int
		Type:   "about:blank",
		Title:  "CRL temporarily unavailable",
		Status: http.StatusServiceUnavailable,
		Code:   "crl_unavailable",
	})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", strconv.Itoa(max(int(retryAfter/time.Second), 1)))
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(body)
}

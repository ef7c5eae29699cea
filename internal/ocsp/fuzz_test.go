package ocsp

import (
	"bytes"
	"crypto"
	"errors"
	"math/big"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// FuzzRespond feeds arbitrary bytes to the responder. Whatever arrives, Respond must not panic, must return a
// parseable OCSP response, and must report an error exactly when that response is not "successful".
func FuzzRespond(f *testing.F) {
	fx := newFixture(f, Options{})
	fx.src.set(big.NewInt(1), Status{Known: true})
	fx.src.set(big.NewInt(2), Status{Known: true, Revoked: true, RevokedAt: fx.clock.Now().Add(-time.Hour), Reason: 1})
	other := newTestCA(f, nil, "other")

	f.Add(makeRequest(f, fx.ca.cert, big.NewInt(1), crypto.SHA1, nil))
	f.Add(makeRequest(f, fx.ca.cert, big.NewInt(2), crypto.SHA256, nil))
	f.Add(makeRequest(f, fx.ca.cert, big.NewInt(3), crypto.SHA512, nil))
	f.Add(makeRequest(f, fx.ca.cert, big.NewInt(1), crypto.SHA1, nonceExt(f, []byte("0123456789abcdef"))))
	f.Add(makeRequest(f, fx.ca.cert, big.NewInt(-1), crypto.SHA1, nil))
	f.Add(makeRequest(f, other.cert, big.NewInt(1), crypto.SHA1, nil))
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x01})
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})

	f.Fuzz(func(t *testing.T, der []byte) {
		resp, err := fx.r.Respond(t.Context(), der)
		parsed, perr := xocsp.ParseResponse(resp, fx.ca.cert)
		var re xocsp.ResponseError
		switch {
		case perr == nil:
			if err != nil {
				t.Fatalf("successful response with error %v", err)
			}
			if parsed.Status != xocsp.Good && parsed.Status != xocsp.Revoked && parsed.Status != xocsp.Unknown {
				t.Fatalf("status %d", parsed.Status)
			}
			req, rerr := parseRequest(der)
			if rerr != nil {
				t.Fatalf("answered a request parseRequest rejects: %v", rerr)
			}
			if parsed.SerialNumber.Cmp(req.serial) != 0 {
				t.Fatalf("answered serial %v for request %v", parsed.SerialNumber, req.serial)
			}
			if req.nonceValue != nil {
				exts := responseExtensions(t, resp)
				if len(exts) != 1 || !bytes.Equal(exts[0].Value, req.nonceValue) {
					t.Fatal("nonce not echoed")
				}
			}
		case errors.As(perr, &re):
			if err == nil {
				t.Fatalf("non-successful response %v without error", re.Status)
			}
		default:
			t.Fatalf("unparseable response %x: %v", resp, perr)
		}
	})
}

// FuzzDecodeGETPath checks the tolerant URL decoder never panics and never returns an empty request.
func FuzzDecodeGETPath(f *testing.F) {
	f.Add("/api/ocsp/MEMwQTA%2FMD0wOzAJBgUrDgMCGgUABBR%2B")
	f.Add("/api/ocsp/MEMw QTA/MD0w")
	f.Add("/api/ocsp/%252B%252F")
	f.Add("/api/ocsp")
	f.Add("/")
	f.Fuzz(func(t *testing.T, p string) {
		der, err := decodeGETPath(p)
		if err == nil && len(der) == 0 {
			t.Fatal("empty request accepted")
		}
	})
}

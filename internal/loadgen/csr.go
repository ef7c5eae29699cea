package loadgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/http"
)

// CSRConfig describes the /api/csr requests BuildCSR makes.
type CSRConfig struct {
	// Path is the REST endpoint, e.g. /api/csr.
	Path string
	// Token returns the bearer token of request i. Tokens are minted here, before the timed phase; a service
	// that rate-limits per caller should get a distinct caller per request.
	Token func(i int) (string, error)
	// Keys are the CSR keys, used round-robin; nil means a fresh P-256 key per request (cheap to make).
	Keys []crypto.Signer
	// CommonName prefixes each CSR's common name; the request index is appended (default "loadgen-api-").
	CommonName string
}

// CSRRequest is a built /api/csr request.
type CSRRequest struct {
	Request
	CSR *x509.CertificateRequest
}

// BuildCSR builds n /api/csr requests (DER PKCS#10, answer requested as DER) on every CPU at once. Each answer
// is checked during the run: HTTP 200 and a certificate for the CSR's key and name.
func BuildCSR(cfg CSRConfig, n int) ([]*CSRRequest, error) {
	if cfg.Path == "" || cfg.Token == nil {
		return nil, errors.New("loadgen: CSRConfig needs Path and Token")
	}
	if cfg.CommonName == "" {
		cfg.CommonName = "loadgen-api-"
	}
	out := make([]*CSRRequest, n)
	err := parallel(n, func(i int) error {
		var key crypto.Signer
		if len(cfg.Keys) > 0 {
			key = cfg.Keys[i%len(cfg.Keys)]
		} else {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			key = k
		}
		cn := fmt.Sprintf("%s%d", cfg.CommonName, i)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
		if err != nil {
			return fmt.Errorf("loadgen: CSR: %w", err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return fmt.Errorf("loadgen: CSR: %w", err)
		}
		tok, err := cfg.Token(i)
		if err != nil {
			return fmt.Errorf("loadgen: token %d: %w", i, err)
		}
		r := &CSRRequest{CSR: csr}
		r.Request = Request{Method: http.MethodPost, Path: cfg.Path, Body: der,
			Header: http.Header{"Content-Type": {"application/pkcs10"}, "Accept": {"application/pkix-cert"},
				"Authorization": {"Bearer " + tok}},
			Check: func(status int, _ http.Header, body []byte) error { return r.CheckCertificate(status, body) }}
		out[i] = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CSRRequests returns the plain requests of built /api/csr requests, for Run.
func CSRRequests(reqs []*CSRRequest) []Request {
	out := make([]Request, len(reqs))
	for i, r := range reqs {
		out[i] = r.Request
	}
	return out
}

// CheckCertificate accepts HTTP 200 with a DER certificate for the CSR's key and common name.
func (r *CSRRequest) CheckCertificate(status int, body []byte) error {
	if status != http.StatusOK {
		return fmt.Errorf("HTTP %d", status)
	}
	cert, err := x509.ParseCertificate(body)
	if err != nil {
		return fmt.Errorf("answer is not a DER certificate: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, r.CSR.PublicKey) || cert.Subject.CommonName != r.CSR.Subject.CommonName {
		return errors.New("certificate does not match the CSR")
	}
	return nil
}

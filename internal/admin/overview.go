package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/store"
)

// StalePendingAge is how old a pending record must be before it counts as stale: the request that wrote it died
// between the pending record and the issued update, so a certificate may have been signed (reliability.md §5.1).
const StalePendingAge = 30 * time.Minute

// maxStalePending bounds the stale pending records one overview lists.
const maxStalePending = 50

// Overview is what GET /api/certificates/overview answers: the CA's public state for the console. It holds no
// secrets (certificates, key identifiers and settings that are public or visible to admins anyway).
type Overview struct {
	Mode string `json:"mode"`
	// CA is the issuing CA certificate first, then its issuers.
	CA []CertSummary `json:"ca"`
	// RA is the SCEP registration authority certificate; nil when the CA key decrypts and signs CertReps itself.
	RA  *CertSummary `json:"ra,omitempty"`
	Key KeyInfo      `json:"key"`
	// CRL is the CRL currently served; CRLError says why there is none.
	CRL       *CRLInfo       `json:"crl,omitempty"`
	CRLError  string         `json:"crlError,omitempty"`
	Endpoints []EndpointInfo `json:"endpoints"`
	Profiles  []ProfileInfo  `json:"profiles"`
	// APIProfile is the profile POST /api/csr issues with.
	APIProfile string `json:"apiProfile,omitempty"`
	// APIProfiles are the profiles a CSR.Request.Db caller may choose on /api/csr, the default first.
	APIProfiles []string `json:"apiProfiles,omitempty"`
	// URLs are the public URLs of the CA certificate, CRL, OCSP responder and SCEP endpoints' base.
	URLs map[string]string `json:"urls"`
	// StalePending are pending records older than StalePendingAge (at most 50, oldest first).
	StalePending []CertificateView `json:"stalePending"`
	// StalePendingMinutes is StalePendingAge in minutes.
	StalePendingMinutes int  `json:"stalePendingMinutes"`
	IntuneSync          bool `json:"intuneSync"`
	// Warnings are the settings that load but weaken authorization or do not work as written (config.Warning);
	// empty when there are none.
	Warnings []ConfigWarning `json:"warnings"`
}

// ConfigWarning is one setting that loads but weakens authorization (config.Warning): never a secret's value.
type ConfigWarning struct {
	Code      string   `json:"code"`
	Feature   string   `json:"feature"`
	Settings  []string `json:"settings"`
	Endpoints []string `json:"endpoints,omitempty"`
	Message   string   `json:"message"`
}

// CertSummary describes one CA-side certificate.
type CertSummary struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	Key       string    `json:"key"`
	SHA256    string    `json:"sha256"`
	// EKU lists the extended key usages by name (the RA certificate's purpose).
	EKU []string `json:"eku,omitempty"`
}

// KeyInfo says where the CA key lives.
type KeyInfo struct {
	Custody string `json:"custody"` // "keyvault" or "local"
	Vault   string `json:"vault,omitempty"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	KID     string `json:"kid,omitempty"`
	RAMode  string `json:"raMode"`
}

// CRLInfo describes the CRL being served.
type CRLInfo struct {
	Number     string    `json:"number"`
	ThisUpdate time.Time `json:"thisUpdate"`
	NextUpdate time.Time `json:"nextUpdate"`
	Entries    int       `json:"entries"`
}

// EndpointInfo is one SCEP endpoint (never its secret).
type EndpointInfo struct {
	Name      string `json:"name"`
	Challenge string `json:"challenge"`
	Profile   string `json:"profile"`
	URL       string `json:"url"`
}

// ProfileInfo is one certificate profile.
type ProfileInfo struct {
	Name     string   `json:"name"`
	Validity string   `json:"validity"`
	KeyUsage []string `json:"keyUsage"`
	EKU      []string `json:"eku"`
	SANs     []string `json:"sans"`
}

// OverviewFunc builds the parts of the overview only the wiring knows (keys, CRL, settings); the admin handler
// adds the stale pending records from the store.
type OverviewFunc func(ctx context.Context) (*Overview, error)

// SummarizeCertificate describes c for the overview.
func SummarizeCertificate(c *x509.Certificate) CertSummary {
	sum := sha256.Sum256(c.Raw)
	s := CertSummary{Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: store.SerialString(c.SerialNumber),
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, Key: describePublicKey(c.PublicKey),
		SHA256: strings.ToUpper(fmt.Sprintf("%x", sum[:]))}
	for _, u := range c.ExtKeyUsage {
		s.EKU = append(s.EKU, ExtKeyUsageName(u))
	}
	return s
}

func describePublicKey(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA " + strconv.Itoa(k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", pub)
}

var extKeyUsageNames = map[x509.ExtKeyUsage]string{x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth",
	x509.ExtKeyUsageClientAuth: "clientAuth", x509.ExtKeyUsageCodeSigning: "codeSigning",
	x509.ExtKeyUsageEmailProtection: "emailProtection", x509.ExtKeyUsageTimeStamping: "timeStamping",
	x509.ExtKeyUsageOCSPSigning: "OCSPSigning", x509.ExtKeyUsageIPSECEndSystem: "ipsecEndSystem",
	x509.ExtKeyUsageIPSECTunnel: "ipsecTunnel", x509.ExtKeyUsageIPSECUser: "ipsecUser"}

// ExtKeyUsageName names an extended key usage the way RFC 5280 does.
func ExtKeyUsageName(u x509.ExtKeyUsage) string {
	if n, ok := extKeyUsageNames[u]; ok {
		return n
	}
	return "eku(" + strconv.Itoa(int(u)) + ")"
}

// KeyUsageNames names the bits of ku.
func KeyUsageNames(ku x509.KeyUsage) []string {
	names := []string{"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	var out []string
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// CRLNumber renders a CRL number in decimal, as OpenSSL prints it.
func CRLNumber(n *big.Int) string {
	if n == nil {
		return ""
	}
	return n.String()
}

// serveConsoleRoutes answers the read-only routes the console needs beyond search/get/revoke:
//
//	GET /api/certificates/overview               the CA overview and the stale pending records
//	GET /api/certificates/revocation-sync        the most recent revocation sync runs (?limit=1–100, default 20)
//	GET /api/certificates/revocation-sync/{id}   one run, running or ended (the status a manual start points to)
//
// The caller is already authenticated and holds Certificates.Read or Certificates.Manage. It reports whether it
// answered.
func (h *Handler) serveConsoleRoutes(w http.ResponseWriter, r *http.Request, rest string) bool {
	switch {
	case rest == "overview":
		if r.Method != http.MethodGet {
			httpx.MethodNotAllowed(w, r, http.MethodGet)
			return true
		}
		h.overview(w, r)
		return true
	case rest == "revocation-sync" && r.Method == http.MethodGet:
		h.runs(w, r)
		return true
	case rest == "revocation-sync" && r.Method != http.MethodPost:
		httpx.MethodNotAllowed(w, r, "GET, POST")
		return true
	case strings.HasPrefix(rest, "revocation-sync/"):
		if r.Method != http.MethodGet {
			httpx.MethodNotAllowed(w, r, http.MethodGet)
			return true
		}
		h.runStatus(w, r, strings.TrimPrefix(rest, "revocation-sync/"))
		return true
	}
	return false
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Overview == nil {
		httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusNotFound, Code: "not_found", Detail: "no overview is configured"})
		return
	}
	ov, err := h.cfg.Overview(r.Context())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	recs, err := h.cfg.Store.Pending(r.Context(), h.cfg.Now().Add(-StalePendingAge))
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	ov.StalePending = []CertificateView{}
	for i, rec := range recs {
		if i == maxStalePending {
			break
		}
		ov.StalePending = append(ov.StalePending, view(rec, false))
	}
	ov.StalePendingMinutes = int(StalePendingAge / time.Minute)
	ov.IntuneSync = h.cfg.Sync != nil
	writeJSON(w, http.StatusOK, ov)
}

func (h *Handler) runs(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			badRequest(w, r, "bad_limit", "limit must be 1–100")
			return
		}
		limit = n
	}
	runs, err := h.cfg.Store.Runs(r.Context(), limit)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	out := struct {
		Items   []SyncRunView `json:"items"`
		Enabled bool          `json:"enabled"`
	}{Items: []SyncRunView{}, Enabled: h.cfg.Sync != nil}
	for _, run := range runs {
		out.Items = append(out.Items, h.runView(run))
	}
	writeJSON(w, http.StatusOK, out)
}

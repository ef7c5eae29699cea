package custody

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Local file names inside the key directory (.local/ca for `make run`).
const (
	localCAKey   = "ca.key"
	localCAChain = "ca.pem"
	localRAKey   = "ra.key"
	localRACert  = "ra.pem"
	// The RA replaced by the last rotation, kept for the overlap (see RAOverlap).
	localPrevRAKey  = "ra-previous.key"
	localPrevRACert = "ra-previous.pem"
)

// LocalInitOptions shape a local CA.
type LocalInitOptions struct {
	Subject  pkix.Name
	Validity time.Duration
	KeyType  string // "RSA" or "EC"
	// KeySize is the RSA key size: 3072 (also for 0) or 4096.
	KeySize int
	// Curve is the EC curve: "P-256" (also for "") or "P-384".
	Curve string
	// NoRA selects CA-decrypt mode: no RA key is created.
	NoRA bool
	// Recorder, when set, records the RA certificate (pending before the CA key signs, issued after).
	Recorder Recorder
}

// InitLocal creates a local CA in dir unless one exists: a key, a self-signed root and the RA. It is idempotent:
// an existing CA is kept and only a missing RA is created. It reports whether anything was created.
func InitLocal(dir string, opts LocalInitOptions, now time.Time) (bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("custody: creating %s: %w", dir, err)
	}
	created := false
	if _, err := os.Stat(filepath.Join(dir, localCAChain)); errors.Is(err, fs.ErrNotExist) {
		key, err := generateKey(opts.KeyType, opts.KeySize, opts.Curve)
		if err != nil {
			return false, err
		}
		if opts.Validity == 0 {
			opts.Validity = 10 * 365 * 24 * time.Hour
		}
		if opts.Subject.CommonName == "" {
			opts.Subject = pkix.Name{CommonName: "azscep local CA", Organization: []string{"azscep"}}
		}
		root, err := NewRoot(key, RootOptions{Subject: opts.Subject, Validity: opts.Validity}, now)
		if err != nil {
			return false, err
		}
		if err := writeKey(filepath.Join(dir, localCAKey), key); err != nil {
			return false, err
		}
		if err := writeCerts(filepath.Join(dir, localCAChain), root); err != nil {
			return false, err
		}
		created = true
	} else if err != nil {
		return false, fmt.Errorf("custody: %w", err)
	}
	if opts.NoRA {
		return created, nil
	}
	if _, err := os.Stat(filepath.Join(dir, localRACert)); errors.Is(err, fs.ErrNotExist) {
		if _, err := (LocalRA{Dir: dir}).StoreRA(context.Background(), opts.Recorder, "", false, "", now); err != nil {
			return false, err
		}
		created = true
	}
	return created, nil
}

// RotateLocalRA replaces the local RA key and certificate with new ones issued by the local CA, unrecorded; the
// replaced RA is kept as the previous one. `ca rotate-ra` goes through RAKeeper.Rotate instead, which records the
// certificate and revokes an older previous RA.
func RotateLocalRA(dir string, now time.Time) error {
	l := LocalRA{Dir: dir}
	_, version, err := l.ReadRA(context.Background(), "")
	if err != nil {
		return err
	}
	_, err = l.StoreRA(context.Background(), nil, version, true, "", now)
	return err
}

// LocalRA is the RAStore of local mode: the RA in files next to the CA (ra.pem, ra.key and, during an overlap,
// ra-previous.pem, ra-previous.key).
type LocalRA struct{ Dir string }

var _ RAStore = LocalRA{}

// version identifies the stored RA by the certificates' bytes: a small file read, no key parsed.
func (l LocalRA) version() (string, error) {
	h := sha256.New()
	for _, name := range []string{localRACert, localPrevRACert} {
		b, err := os.ReadFile(filepath.Join(l.Dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			h.Write([]byte{0})
			continue
		}
		if err != nil {
			return "", fmt.Errorf("custody: reading %s: %w", name, err)
		}
		h.Write(b)
		h.Write([]byte{1})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ReadRA implements RAStore.
func (l LocalRA) ReadRA(_ context.Context, known string) (*RAState, string, error) {
	version, err := l.version()
	if err != nil || version == known {
		return nil, version, err
	}
	cur, err := readLocalRA(l.Dir, localRACert, localRAKey)
	if err != nil {
		return nil, "", err
	}
	st := &RAState{Current: *cur}
	if _, err := os.Stat(filepath.Join(l.Dir, localPrevRACert)); err == nil {
		if st.Previous, err = readLocalRA(l.Dir, localPrevRACert, localPrevRAKey); err != nil {
			return nil, "", fmt.Errorf("previous RA: %w", err)
		}
	}
	return st, version, nil
}

func readLocalRA(dir, certName, keyName string) (*RA, error) {
	certs, err := readCerts(filepath.Join(dir, certName))
	if err != nil {
		return nil, err
	}
	key, err := readKey(filepath.Join(dir, keyName))
	if err != nil {
		return nil, err
	}
	ra, ok := key.(RAKey)
	if !ok {
		return nil, errors.New("custody: local RA key cannot decrypt")
	}
	return &RA{Cert: certs[0], Key: ra}, nil
}

// StoreRA implements RAStore. The previous RA's files are written before the new current ones.
func (l LocalRA) StoreRA(ctx context.Context, rec Recorder, version string, keepCurrent bool, cn string, now time.Time) (*x509.Certificate, error) {
	if cur, err := l.version(); err != nil {
		return nil, err
	} else if version != "" && cur != version {
		return nil, ErrRAChanged
	}
	chain, caKey, err := loadLocalCA(l.Dir)
	if err != nil {
		return nil, err
	}
	raKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("custody: generating RA key: %w", err)
	}
	if cn == "" {
		cn = defaultRACommonName
	}
	raCert, err := IssueRACertificate(ctx, rec, chain[0], caKey, raKey.Public(), cn, now)
	if err != nil {
		return nil, err
	}
	if keepCurrent {
		for _, f := range [][2]string{{localRAKey, localPrevRAKey}, {localRACert, localPrevRACert}} {
			b, err := os.ReadFile(filepath.Join(l.Dir, f[0]))
			if err != nil {
				return nil, fmt.Errorf("custody: keeping the previous RA: %w", err)
			}
			if err := writeAtomic(filepath.Join(l.Dir, f[1]), b, 0o600); err != nil {
				return nil, err
			}
		}
	} else if err := l.removePrevious(); err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(l.Dir, localRAKey), raKey); err != nil {
		return nil, err
	}
	return raCert, writeCerts(filepath.Join(l.Dir, localRACert), raCert)
}

// ForgetPreviousRA implements RAStore.
func (l LocalRA) ForgetPreviousRA(_ context.Context, version string) error {
	if cur, err := l.version(); err != nil {
		return err
	} else if cur != version {
		return ErrRAChanged
	}
	return l.removePrevious()
}

func (l LocalRA) removePrevious() error {
	for _, name := range []string{localPrevRACert, localPrevRAKey} {
		if err := os.Remove(filepath.Join(l.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("custody: removing %s: %w", name, err)
		}
	}
	return nil
}

// LoadLocal loads a local CA (and its RA, if present) and checks it.
func LoadLocal(dir string, now time.Time) (*Keys, error) {
	chain, caKey, err := loadLocalCA(dir)
	if err != nil {
		return nil, err
	}
	k := &Keys{Chain: chain, CASigner: caKey}
	if _, err := os.Stat(filepath.Join(dir, localRACert)); err == nil {
		st, _, err := LocalRA{Dir: dir}.ReadRA(context.Background(), "")
		if err != nil {
			return nil, err
		}
		k.loadRA(st)
	}
	if err := k.Check(now); err != nil {
		return nil, err
	}
	return k, nil
}

func loadLocalCA(dir string) ([]*x509.Certificate, crypto.Signer, error) {
	chain, err := readCerts(filepath.Join(dir, localCAChain))
	if err != nil {
		return nil, nil, err
	}
	key, err := readKey(filepath.Join(dir, localCAKey))
	if err != nil {
		return nil, nil, err
	}
	if err := matchCAKey(key, chain[0]); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	return chain, key, nil
}

// CheckLocalKey refuses a local CA key other than those a Key Vault CA key may be (ErrInitOptions): key type RSA
// ("" too) of 3072 (0 too) or 4096 bits, or EC ("P-256", "" too, or "P-384"), rather than make a key the operator
// did not ask for.
func CheckLocalKey(keyType string, size int, curve string) error {
	switch keyType {
	case "", "RSA":
		if size != 0 && size != 3072 && size != 4096 {
			return fmt.Errorf("%w: RSA key size %d is not 3072 or 4096", ErrInitOptions, size)
		}
	case "EC":
		if curve != "" && curve != "P-256" && curve != "P-384" {
			return fmt.Errorf("%w: curve %q is not P-256 or P-384", ErrInitOptions, curve)
		}
	default:
		return fmt.Errorf("%w: local key type %q is not RSA or EC", ErrInitOptions, keyType)
	}
	return nil
}

func generateKey(keyType string, size int, curve string) (crypto.Signer, error) {
	if err := CheckLocalKey(keyType, size, curve); err != nil {
		return nil, err
	}
	if keyType == "EC" {
		if curve == "P-384" {
			return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		}
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if size == 0 {
		size = 3072
	}
	return rsa.GenerateKey(rand.Reader, size)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("custody: encoding key: %w", err)
	}
	return writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func writeCerts(path string, certs ...*x509.Certificate) error {
	return writeAtomic(path, EncodePEM(certs...), 0o644)
}

// writeAtomic writes via a temporary file and rename so a crash never leaves half a key.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("custody: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("custody: writing %s: %w", path, err)
	}
	return nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("custody: reading key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("custody: %s is not a PKCS#8 PEM private key", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("custody: parsing %s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("custody: %s holds a key that cannot sign", path)
	}
	return s, nil
}

// ParsePEMCertificates parses every CERTIFICATE block in data.
func ParsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("custody: parsing certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("custody: no certificate found")
	}
	return certs, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("custody: reading certificates: %w", err)
	}
	certs, err := ParsePEMCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// EncodePEM renders certificates as PEM.
func EncodePEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
